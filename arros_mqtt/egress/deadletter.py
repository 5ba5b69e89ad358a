"""Dead letters: a payload that could not be decoded (or decoded rows that could not go on), published where
an operator can see it.

`{prefix}/deadletter/{stream}` carries `{"topic", "error", "payload_b64", "received_at"}` (docs/payloads.md,
"dead letters"): the original bytes survive, base64-encoded, with the reason.
"""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pyarrow as pa

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


MAX_ROWS_PER_LETTER = 1000  # rows listed in one dead letter; `rows_total` counts them all


def deadletter_rows(rows: pa.Table, stream: str, subscription: str | None, error: str) -> bytes:
    """Decoded rows that could not go on (a subscription's run-time error, an event time out of bounds):
    `{"stream", "subscription", "error", "rows_total", "rows": [...]}`, metadata columns included."""
    listed = rows.slice(0, MAX_ROWS_PER_LETTER).to_pylist()
    return orjson.dumps({"stream": stream, "subscription": subscription, "error": error,
                         "rows_total": rows.num_rows, "rows": listed},
                        default=str, option=orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS)


OVERSIZED_SAMPLE = 1024  # bytes of an oversized result kept in its dead letter


def deadletter_oversized(stream: str, subscription: str, topic: str, payload: bytes, limit: int) -> bytes:
    """A result whose PUBLISH would exceed the broker's Maximum Packet Size (the broker would drop the
    connection): `{"stream", "subscription", "topic", "error", "bytes", "payload_b64"}` with the first
    OVERSIZED_SAMPLE bytes only, so the letter itself fits."""
    return orjson.dumps({
        "stream": stream,
        "subscription": subscription,
        "topic": topic,
        "error": f"result of {len(payload)} bytes is over the broker's maximum packet size ({limit} bytes)",
        "bytes": len(payload),
        "payload_b64": base64.b64encode(payload[:OVERSIZED_SAMPLE]).decode(),
        "truncated": len(payload) > OVERSIZED_SAMPLE,
    })
