"""The requesting side of the control protocol: one request, one reply (what `arros sub` uses).

The reply topic is `{prefix}/control/replies/{client_id}` (so a broker ACL can grant an operator
`{prefix}/control/replies/#` only). With MQTT 5 it is the request's Response Topic and the Correlation
Data ties the reply to the request; with MQTT 3.1.1 (the embedded broker speaks nothing else) the
request carries it as `reply_to` and a `request_id` that the reply echoes.

In a `[cluster]` group every member answers, its reply carrying `member`. Before the request, the client
reads the members' retained presence (`{prefix}/members/+`, control/membership.py); the request then
waits for the reply of every member online, or the timeout.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from arros_mqtt.config import BrokerConfig
from arros_mqtt.core.errors import ExternalError
from arros_mqtt.transport.paho_client import connect, new_client, send_at_once


class NoReply(ExternalError):
    """The broker or the service did not answer in time."""


@dataclass(frozen=True)
class GroupReplies:
    """The replies to one request: one per member in a group (each with `member`), else one."""

    replies: list[dict[str, Any]]
    missing: list[str]  # members online that did not answer within the timeout
    offline: list[str] = field(default_factory=list)  # members whose retained presence says offline
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (name, member): its status


def _note_member(online: set[str], member: str, payload: bytes, offline: set[str] | None = None) -> None:
    """`offline`: also collect the members whose presence says offline (a cleared one is neither)."""
    try:
        presence = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        return
    if isinstance(presence, dict) and presence.get("online") is True:
        online.add(member)
        if offline is not None:
            offline.discard(member)
    else:
        online.discard(member)
        if offline is not None and isinstance(presence, dict) and presence.get("online") is False:
            offline.add(member)


def _note_status(statuses: dict[tuple[str, str], dict[str, Any]], rest: str, payload: bytes) -> None:
    """A member's status at `{prefix}/status/{name}/{member}` (`rest`: `{name}/{member}`); empty: cleared."""
    name, _, member = rest.partition("/")
    try:
        status = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return
    if isinstance(status, dict):
        statuses[(name, member)] = status
    else:
        statuses.pop((name, member), None)


class ControlClient:
    def __init__(self, broker: BrokerConfig, prefix: str, timeout: float = 10.0) -> None:
        self.v5 = broker.protocol != "3.1.1"
        self.broker = replace(broker, client_id=f"arros-cli-{uuid.uuid4().hex[:12]}",
                              protocol="5" if self.v5 else "3.1.1")
        self.prefix = prefix
        self.timeout = timeout
        self.reply_topic = f"{prefix}/control/replies/{self.broker.client_id}"

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return the (first) reply object; NoReply on timeout."""
        return self.request_all(body).replies[0]

    def request_all(self, body: dict[str, Any], statuses: bool = False) -> GroupReplies:
        """Send one request; the replies of every member online (one reply outside a group). NoReply when
        none came in time; members that did not answer in time are `missing`. `statuses`: also read the
        group's retained per-member statuses (`{prefix}/status/+/+`), for a merged view (groupstatus.py)."""
        correlation = uuid.uuid4().bytes
        replies: list[dict[str, Any]] = []
        online: set[str] = set()
        offline: set[str] = set()
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        lock = threading.Lock()  # `latest` is written on paho's thread
        status_prefix = f"{self.prefix}/status/"
        got_reply, subscribed = threading.Event(), threading.Event()
        members_prefix = f"{self.prefix}/members/"
        if not self.v5:
            body = {**body, "request_id": correlation.hex(), "reply_to": self.reply_topic}

        def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            if message.topic.startswith(members_prefix):
                with lock:
                    _note_member(online, message.topic[len(members_prefix):], message.payload, offline)
                return
            if message.topic.startswith(status_prefix):
                with lock:
                    _note_status(latest, message.topic[len(status_prefix):], message.payload)
                return
            if self.v5:
                if getattr(message.properties, "CorrelationData", None) != correlation:
                    return
                reply = orjson.loads(message.payload)
            else:
                reply = orjson.loads(message.payload)
                if not isinstance(reply, dict) or reply.get("request_id") != correlation.hex():
                    return
            replies.append(reply)
            answered = {r.get("member") for r in replies}
            if None in answered or online <= answered:
                got_reply.set()

        client = new_client(self.broker, persistent=False)
        send_at_once(client)
        client.on_message = on_message
        # the retained presences come before the SUBACK of the second SUBSCRIBE: the broker answers in order
        client.on_subscribe = lambda _c, _u, mid, *_: subscribed.set() if mid == reply_mid[0] else None
        reply_mid = [-1]

        def on_connect(c: mqtt.Client, _present: bool) -> None:
            c.subscribe(f"{members_prefix}+", qos=1)
            if statuses:
                c.subscribe(f"{status_prefix}+/+", qos=0)
            reply_mid[0] = c.subscribe(self.reply_topic, qos=1)[1]

        connect(client, self.broker, persistent=False, on_connect=on_connect)
        try:
            if not subscribed.wait(self.timeout):
                raise NoReply(f"could not connect to and subscribe on {self.broker.url} within {self.timeout:g} s")
            properties = None
            if self.v5:
                properties = Properties(PacketTypes.PUBLISH)
                properties.ResponseTopic = self.reply_topic
                properties.CorrelationData = correlation
            client.publish(f"{self.prefix}/control", orjson.dumps(body), qos=1, properties=properties)
            if not got_reply.wait(self.timeout) and not replies:
                raise NoReply(f"no reply on {self.reply_topic} within {self.timeout:g} s: is `arros run` attached "
                              f"to {self.broker.url} with [control] prefix = \"{self.prefix}\"?")
            taken = list(replies)
            answered = {r.get("member") for r in taken}
            with lock:
                missing = sorted(online - answered) if None not in answered else []
                return GroupReplies(taken, missing, sorted(offline - answered), dict(latest))
        finally:
            client.disconnect()
            client.loop_stop()
