"""Dead letters: a payload that could not be decoded, published where an operator can see it.

`{prefix}/deadletter/{stream}` carries `{"topic", "error", "payload_b64", "received_at"}` (docs/payloads.md,
"dead letters"): the original bytes survive, base64-encoded, with the reason.
"""

from __future__ import annotations

import base64
import datetime as dt

import orjson

from arros_mqtt.decode.stream_decoder import BadMessage


def deadletter_topic(prefix: str, stream: str) -> str:
    return f"{prefix}/deadletter/{stream}"


def deadletter_payload(bad: BadMessage, stream: str) -> bytes:
    received = dt.datetime.fromtimestamp(bad.received_ms / 1000, tz=dt.UTC)
    return orjson.dumps({
        "stream": stream,
        "topic": bad.topic,
        "error": bad.error,
        "payload_b64": base64.b64encode(bad.payload).decode(),
        "received_at": received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    })
