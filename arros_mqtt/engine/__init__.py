"""Streaming SQL over micro-batches: subscriptions compiled once, run by DataFusion or pyarrow kernels.

What callers outside the engine use: `Engine` (add, build, install, remove, pause, resume, process,
tick, advance, explain; `subscriptions`, `paused`, `pending`, `watermarks`, `streams`), `Result`,
`RunBounds` (what a subscription may cost per micro-batch), and of a `Subscription` its `config`, `name`,
`shape` (`QueryShape`: kind, stream, tables, output schema), `stats`, `describe()`, `kernel`,
`keeps_state`, `holds_raw_rows`, `snapshot()` and `restore()`.
"""

from arros_mqtt.engine.engine import Engine
from arros_mqtt.engine.kernels import DATAFUSION, KERNELS, PYARROW
from arros_mqtt.engine.readonly_sql import PER_ROW, RUNNING, WINDOWED, QueryShape
from arros_mqtt.engine.run_bounds import RunBounds
from arros_mqtt.engine.subscription import Result, Subscription, SubscriptionStats

__all__ = ["DATAFUSION", "KERNELS", "PER_ROW", "PYARROW", "RUNNING", "WINDOWED", "Engine", "QueryShape", "Result",
           "RunBounds", "Subscription", "SubscriptionStats"]
