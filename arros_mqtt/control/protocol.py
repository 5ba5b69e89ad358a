"""The control-topic protocol (docs/control.md): requests in, replies out, as plain data.

A request is a JSON object or a msgpack map published to `{prefix}/control`. Parsing is strict, like
the config file: an unknown key, a wrong type or a missing field is an `invalid_request` that says
which key and why. Nothing here touches the engine or the network, so every rule is unit-tested.

    >>> parse_request(b'{"op": "drop", "name": "hot", "request_id": "r-1"}').name
    'hot'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.core.errors import UserError
from arros_mqtt.core.names import NAME_RULE, valid_name
from arros_mqtt.core.topics import reserved_output

MAX_REQUEST_BYTES = 64 * 1024
MAX_REQUEST_ID_CHARS = 200
MAX_REPLY_BYTES = 256 * 1024  # a reply never goes past this: long texts (plans) are cut with a marker
TRUNCATED = " ... [truncated: {shown} of {total} characters]"
DEFINITION_KEYS = ("sql", "output", "format", "qos", "retain", "batch", "timestamps", "archive", "late_output")
COMMON_KEYS = ("op", "request_id", "reply_to")
OP_KEYS: dict[str, tuple[str, ...]] = {
    "create": ("name", *DEFINITION_KEYS),
    "replace": ("name", *DEFINITION_KEYS),
    "drop": ("name",),
    "pause": ("name",),
    "resume": ("name",),
    "list": (),
    "describe": ("name",),
    "explain": ("name", "sql"),
    "reset_schema": ("name",),  # the name of a stream whose schema was inferred
}
OPS = tuple(OP_KEYS)
CODES = ("invalid_request", "invalid_sql", "unknown_stream", "exists", "not_found", "forbidden", "limit_exceeded",
         "internal_error")


class ControlError(UserError):
    """A request that fails with one of the protocol's error codes: the requester's to fix (an invalid
    request or SQL, a name that exists or does not, a limit), except `internal_error`, which is ours."""

    def __init__(self, code: str, message: str) -> None:
        assert code in CODES, code
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class Request:
    op: str
    request_id: str | int | None = None
    reply_to: str | None = None
    name: str | None = None
    definition: dict[str, Any] = field(default_factory=dict)  # create/replace: the subscription's keys
    sql: str | None = None  # explain of a query that is not a subscription


@dataclass(frozen=True)
class Envelope:
    """What can be read of a request even when it is malformed: where and how to answer it."""

    request_id: str | int | None = None
    reply_to: str | None = None


def decode_payload(payload: bytes) -> Any:
    """JSON if it looks like JSON (starts with `{`, `[` or whitespace), else msgpack."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise ControlError("invalid_request", f"request is {len(payload)} bytes; the limit is {MAX_REQUEST_BYTES}")
    if not payload:
        raise ControlError("invalid_request", "empty request: expected a JSON object or a msgpack map")
    if payload.lstrip()[:1] in (b"{", b"[", b'"') or payload[:1].isspace():
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ControlError("invalid_request", f"invalid JSON: {exc}") from None
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise ControlError("invalid_request", f"not a JSON object or a msgpack map: {reason}") from None


def envelope(data: Any) -> Envelope:
    """The request id and reply_to of a decoded request, each only if it is valid."""
    if not isinstance(data, dict):
        return Envelope()
    request_id = data.get("request_id")
    reply_to = data.get("reply_to")
    return Envelope(request_id=request_id if _valid_request_id(request_id) else None,
                    reply_to=reply_to if isinstance(reply_to, str) and valid_reply_topic(reply_to) else None)


def parse_request(payload: bytes) -> Request:
    """A validated request; ControlError("invalid_request", what is wrong) otherwise."""
    return validate(decode_payload(payload))


def validate(data: Any) -> Request:
    if not isinstance(data, dict):
        raise ControlError("invalid_request", f"a request is an object/map, got {_kind(data)}")
    op = data.get("op")
    if op is None:
        raise ControlError("invalid_request", f"'op' is required (one of: {', '.join(OPS)})")
    if not isinstance(op, str) or op not in OP_KEYS:
        raise ControlError("invalid_request", f"unknown op {_short(op)} (one of: {', '.join(OPS)})")
    allowed = COMMON_KEYS + OP_KEYS[op]
    for key in data:
        if key not in allowed:
            raise ControlError("invalid_request", f"unknown key {_short(key)} for {op} (known: {', '.join(allowed)})")
    request_id = data.get("request_id")
    if request_id is not None and not _valid_request_id(request_id):
        raise ControlError("invalid_request", f"request_id must be a string of at most {MAX_REQUEST_ID_CHARS} "
                           f"characters or an integer, got {_kind(request_id)}")
    reply_to = data.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, str) and valid_reply_topic(reply_to)):
        raise ControlError("invalid_request", "reply_to must be a topic name without wildcards")
    name = data.get("name")
    if "name" in OP_KEYS[op] and (op != "explain" or name is not None):
        _check_name(name)
    sql = data.get("sql") if op == "explain" else None
    if op == "explain":
        if (name is None) == (sql is None):
            raise ControlError("invalid_request", "explain takes either 'name' (a subscription) or 'sql' (a query)")
        if sql is not None and not (isinstance(sql, str) and sql.strip()):
            raise ControlError("invalid_request", "'sql' must be a non-empty string")
    definition = {k: v for k, v in data.items() if k in DEFINITION_KEYS} if op in ("create", "replace") else {}
    for key, value in definition.items():
        if isinstance(value, str) and "\x00" in value:
            raise ControlError("invalid_request", f"'{key}' contains a NUL character")
    return Request(op=op, request_id=request_id, reply_to=reply_to, name=name, definition=definition, sql=sql)


def check_outputs(config: SubscriptionConfig, prefix: str) -> None:
    """`forbidden` for an output or late_output under the control prefix or a `$` topic: a subscription
    must never write requests, replies, dead letters, catalogue or health (the config file's rule too)."""
    for key in ("output", "late_output"):
        template = getattr(config, key)
        reason = reserved_output(template, prefix) if template is not None else None
        if reason is not None:
            raise ControlError("forbidden", f"{key}: {reason}")


def valid_reply_topic(topic: str) -> bool:
    """A topic one may publish to: non-empty, no wildcards, no NUL, at most 65,535 UTF-8 bytes."""
    return (bool(topic) and not any(c in topic for c in "+#\x00")
            and len(topic.encode("utf-8", "surrogatepass")) <= 65535)


def ok_reply(request_id: str | int | None, result: Any, limit: int = MAX_REPLY_BYTES) -> bytes:
    """The reply, at most `limit` bytes: long strings (an explained plan) are cut to a share of it with a
    marker saying how much was left out; a reply still too large (many fields) is `limit_exceeded`."""
    reply = orjson.dumps({"request_id": request_id, "ok": True, "result": result})
    if len(reply) <= limit:
        return reply
    keep = (limit // 2) // max(1, len(_long_strings(result)))
    while keep >= 256:  # JSON escapes may take a character to 6 bytes: cut shorter until it fits
        reply = orjson.dumps({"request_id": request_id, "ok": True, "result": _truncated(result, keep)})
        if len(reply) <= limit:
            return reply
        keep //= 2
    return error_reply(request_id, ControlError("limit_exceeded", f"the reply would be {len(reply):,} bytes; "
                                                f"replies are at most {limit:,}"))


def _long_strings(value: Any, at_least: int = 256) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) > at_least else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _long_strings(v, at_least)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _long_strings(v, at_least)]
    return []


def _truncated(value: Any, keep: int) -> Any:
    if isinstance(value, str) and len(value) > keep:
        return value[:keep] + TRUNCATED.format(shown=keep, total=len(value))
    if isinstance(value, dict):
        return {k: _truncated(v, keep) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_truncated(v, keep) for v in value]
    return value


def error_reply(request_id: str | int | None, error: ControlError) -> bytes:
    return orjson.dumps({"request_id": request_id, "ok": False,
                         "error": {"code": error.code, "message": error.message}})


def _check_name(name: Any) -> None:
    if name is None:
        raise ControlError("invalid_request", "'name' is required")
    if not valid_name(name):
        raise ControlError("invalid_request", f"'name' must be {NAME_RULE}, got {_short(name)}")


def _valid_request_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    return isinstance(value, str) and len(value) <= MAX_REQUEST_ID_CHARS


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null", bytes: "binary"}.get(type(value), type(value).__name__)
