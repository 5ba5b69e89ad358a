"""A retained presence message with its will; the Sparkplug host application's STATE (Sparkplug 3.0,
section 7.3 "Host Application Session") is one.

Arros announces itself as host `host_id` with a retained `spBv1.0/STATE/{host_id}` message
`{"online": true, "timestamp": T}` published on every connect, and registers the matching will
`{"online": false, "timestamp": T}` (same T), so edge nodes see it go offline when its connection
drops. T is fixed per process start: paho re-sends the same will on every reconnect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from arros_mqtt.config import StreamConfig

DEFAULT_HOST_ID = "arros"


@dataclass(frozen=True)
class Presence:
    """A retained online message published on every connect, and its offline twin as the will.

    Used for the Sparkplug host application's STATE (`host_presence`).
    """

    topic: str
    online: bytes
    offline: bytes
    qos: int = 1


def state_topic(host_id: str) -> str:
    return f"spBv1.0/STATE/{host_id}"


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    return orjson.dumps({"online": online, "timestamp": timestamp_ms})


def host_presence(streams: list[StreamConfig], now_ms: int | None = None) -> Presence | None:
    """The STATE birth and will for the sparkplug streams' host id; None without sparkplug streams."""
    host_ids = {s.host_id or DEFAULT_HOST_ID for s in streams if s.format == "sparkplug"}
    if not host_ids:
        return None
    (host_id,) = host_ids  # the config allows one host id per service
    timestamp = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    online, offline = state_payload(True, timestamp), state_payload(False, timestamp)
    return Presence(state_topic(host_id), online=online, offline=offline)
