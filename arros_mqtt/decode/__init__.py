"""Raw MQTT payloads -> Arrow record batches (plus the payloads that failed, with why).

One codec per `format`, registered by name in `CODECS`; `decode_batch` turns a micro-batch of
messages into one table with the stream's full schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import pyarrow as pa

from arros_mqtt.config import StreamConfig
from arros_mqtt.decode.codec import Codec, Decoded, DecodeFailure
from arros_mqtt.decode.json_codec import JsonCodec
from arros_mqtt.decode.msgpack_codec import MsgpackCodec
from arros_mqtt.decode.stream_decoder import BadMessage, StreamDecoder

CODECS: dict[str, type[Codec]] = {"json": JsonCodec, "msgpack": MsgpackCodec}
Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)


class Decoder(Protocol):
    """A stream's micro-batch of raw messages -> a table with the stream's full schema + bad messages."""

    def decode(
        self, topics: list[str], payloads: list[bytes], received_ms: list[int]
    ) -> tuple[pa.Table, list[BadMessage]]: ...

    def tick(self, now: float) -> None: ...


def build_decoder(stream: StreamConfig, publish: Publish) -> Decoder:
    """The decoder for a stream's format; sparkplug's is a stateful host that may publish (NCMD)."""
    if stream.format == "sparkplug":
        from arros_mqtt.sparkplug.decoder import SparkplugDecoder  # protobuf only when used

        return SparkplugDecoder(stream, publish)
    return StreamDecoder(stream, CODECS[stream.format](stream.schema))


__all__ = ["CODECS", "Codec", "DecodeFailure", "Decoded", "Decoder", "StreamDecoder", "build_decoder"]
