"""Who is in a `[cluster]` group: each member's retained presence, and the member name on its replies.

Every member announces itself at `{prefix}/members/{member}` (retained, QoS 1):
`{"member", "group", "online": true, "since"}` on each connect of its control client, and the same with
`"online": false` as that client's will (a kill -9 or a lost connection) and on a clean stop. `arros sub`
reads these retained messages to know which members must answer a request (docs/cluster.md).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from arros_mqtt.transport.presence import Presence


def members_topic(prefix: str, member: str = "+") -> str:
    return f"{prefix}/members/{member}"


def member_status_topic(prefix: str, name: str, member: str) -> str:
    """A subscription's status in a group: one topic per member (`{prefix}/status/{name}/#` reads all)."""
    return f"{prefix}/status/{name}/{member}"


def member_presence(prefix: str, group: str, member: str, now: float | None = None) -> Presence:
    since = now if now is not None else time.time()
    body: dict[str, Any] = {"member": member, "group": group, "since": round(since, 3)}
    return Presence(members_topic(prefix, member), online=orjson.dumps({**body, "online": True}),
                    offline=orjson.dumps({**body, "online": False}))


def with_member(reply: bytes, member: str) -> bytes:
    """A reply (a JSON object) that says which member sent it: in a group every member answers."""
    return orjson.dumps({**orjson.loads(reply), "member": member})
