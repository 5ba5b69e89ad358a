"""What the web console reads and calls of the running service, and nothing more (wired by `Service`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from arros_mqtt.config import Config
from arros_mqtt.engine import Engine
from arros_mqtt.ops.health import HealthSources


@dataclass(frozen=True)
class WebSources:
    """`streams()`: per-stream counters (`messages`, `rows`, `deadletters`); `engine`: its subscriptions,
    their stats and the watermarks, read as the metrics read them; `control(payload)`: a control request
    handled exactly as one on the control topic, its reply payload (None without a control plane);
    `live`: the latest rows of streams and subscriptions (`arros_mqtt.live.LiveViews`, None when off);
    `connectors()`: the running connectors by name (each with `kind` and `stats`)."""

    config: Config
    engine: Engine
    streams: Callable[[], Mapping[str, Any]]
    health: HealthSources
    control: Callable[[bytes], bytes] | None
    live: Any
    connectors: Callable[[], Mapping[str, Any]]
    broker: str  # how the service reaches its broker (`Transport.description`)
