"""Flight SQL commands on the wire: protobuf messages wrapped in `google.protobuf.Any`."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from arros_mqtt.core.errors import UserError
from arros_mqtt.vendor import FlightSql_pb2 as sql

_PACKAGE = sql.DESCRIPTOR.package + "."


class UnknownCommand(UserError):
    """Not a Flight SQL message this server knows (the client's error)."""


def unpack(data: bytes) -> Message:
    """The Flight SQL message in an `Any`; UnknownCommand for anything else."""
    try:
        wrapper = any_pb2.Any.FromString(data)
    except DecodeError:
        raise UnknownCommand("the command is not a Flight SQL message (google.protobuf.Any)") from None
    name = wrapper.type_url.rsplit("/", 1)[-1]
    kind = getattr(sql, name.removeprefix(_PACKAGE), None) if name.startswith(_PACKAGE) else None
    if kind is None:
        raise UnknownCommand(f"unsupported Flight SQL command {name or '(empty)'!r}")
    message = kind()
    wrapper.Unpack(message)
    return message


def pack(message: Message) -> bytes:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()
