"""DataFusion over micro-batches: read-only SQL analysis and the subscriptions it runs."""

from arros_mqtt.engine.engine import Engine, Result
from arros_mqtt.engine.readonly_sql import PER_ROW, RUNNING, WINDOWED, QueryShape
from arros_mqtt.engine.subscription import Subscription

__all__ = ["PER_ROW", "RUNNING", "WINDOWED", "Engine", "QueryShape", "Result", "Subscription"]
