"""Raw MQTT payloads -> Arrow record batches (plus the payloads that failed, with why).

One codec per `format`, registered by name in `CODECS`; `build_decoder` picks the decoder for a
stream: sparkplug's stateful host, a `StreamDecoder` when the schema is declared, an
`InferringStreamDecoder` when it is not (`decoder_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import pyarrow as pa

from arros_mqtt.config import StreamConfig
from arros_mqtt.decode.arrow_codec import ArrowCodec
from arros_mqtt.decode.codec import Codec, Decoded, DecodeFailure
from arros_mqtt.decode.csv_codec import CsvCodec
from arros_mqtt.decode.inferring_decoder import InferringStreamDecoder
from arros_mqtt.decode.influx_codec import InfluxCodec
from arros_mqtt.decode.json_codec import JsonCodec
from arros_mqtt.decode.msgpack_codec import MsgpackCodec
from arros_mqtt.decode.stream_decoder import BadMessage, StreamDecoder

CODECS: dict[str, type[Codec]] = {
    "json": JsonCodec, "msgpack": MsgpackCodec, "csv": CsvCodec, "influx": InfluxCodec, "arrow": ArrowCodec,
}
Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)
OnInferred = Callable[[StreamConfig], None]  # hears a schema-less stream's schema once it is inferred


class Decoder(Protocol):
    """A stream's micro-batch of raw messages -> a table with the stream's full schema + bad messages."""

    def decode(
        self, topics: list[str], payloads: list[bytes], received_ms: list[int]
    ) -> tuple[pa.Table, list[BadMessage]]: ...

    def tick(self, now: float) -> None: ...

    @property
    def extra_fields(self) -> dict[str, int]:
        """Rows per field that an inferred schema lacks."""
        ...


def build_decoder(stream: StreamConfig, publish: Publish, on_inferred: OnInferred | None = None) -> Decoder:
    """The decoder for a stream's format; sparkplug's is a stateful host that may publish (NCMD)."""
    if stream.format == "sparkplug":
        from arros_mqtt.decode.sparkplug.decoder import SparkplugDecoder  # protobuf only when used

        return SparkplugDecoder(stream, publish)
    return decoder_for(stream, on_inferred)


def decoder_for(stream: StreamConfig, on_inferred: OnInferred | None = None) -> StreamDecoder | InferringStreamDecoder:
    """The decoder of a codec-based stream (every format but sparkplug)."""
    codec = CODECS[stream.format]
    if stream.infers_schema:
        return InferringStreamDecoder(stream, codec, on_inferred)
    return StreamDecoder(stream, codec.for_stream(stream))


__all__ = ["CODECS", "Codec", "DecodeFailure", "Decoded", "Decoder", "InferringStreamDecoder", "StreamDecoder",
           "build_decoder", "decoder_for"]
