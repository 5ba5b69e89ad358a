"""Raw MQTT payloads -> Arrow record batches (plus the payloads that failed, with why).

One codec per `format`, registered by name in `CODECS`; `decode_batch` turns a micro-batch of
messages into one table with the stream's full schema.
"""

from arros_mqtt.decode.codec import Codec, Decoded, DecodeFailure
from arros_mqtt.decode.json_codec import JsonCodec
from arros_mqtt.decode.msgpack_codec import MsgpackCodec
from arros_mqtt.decode.stream_decoder import StreamDecoder

CODECS: dict[str, type[Codec]] = {"json": JsonCodec, "msgpack": MsgpackCodec}

__all__ = ["CODECS", "Codec", "DecodeFailure", "Decoded", "StreamDecoder"]
