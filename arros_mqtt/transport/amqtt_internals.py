"""Every use of amqtt's private names, and the check that the installed amqtt still has them.

The embedded broker (embedded_broker.py) needs three things amqtt has no public API for: a flush (its
broadcast queue and delivery tasks are private), a fix to whom retained messages go on CONNECT, and the
Last Wills it sends (no plugin event fires for them, so Arros never saw a Sparkplug edge node's NDEATH).
Nothing else in Arros touches an amqtt name that starts with an underscore
(tests/unit/test_third_party_internals.py scans for it). Only embedded mode imports this module, and with
it amqtt: a client-mode service never loads the broker (idle memory).

Importing it checks the installed amqtt: outside the tested versions, or without a name listed below, it
stops with one DependencyError instead of misrouting retained messages or never flushing.
"""

from __future__ import annotations

from typing import Any

from amqtt.broker import Broker
from amqtt.mqtt.disconnect import DisconnectPacket

from arros_mqtt.transport.library_check import Privates, check_library, init_attributes

LOWEST, BELOW, TESTED_WITH = "0.12.1", "0.13", "0.12.1"
PRIVATES = (
    Privates("amqtt.broker.Broker", lambda: dir(Broker),
             ("_publish_retained_messages_for_subscription", "_handle_disconnect")),
    Privates("amqtt.broker.Broker()", lambda: init_attributes(Broker), ("_broadcast_queue", "_tasks_queue")),
)


def check(privates: tuple[Privates, ...] = PRIVATES, installed: str | None = None) -> None:
    """DependencyError unless the installed amqtt is a tested version with every name of `privates`."""
    check_library("amqtt", LOWEST, BELOW, TESTED_WITH, privates, installed)


check()


class ArrosBroker(Broker):
    """amqtt's Broker with two fixes (checked against 0.12.1).

    On every CONNECT, amqtt sends the new client the retained messages matching *every* subscription in the
    broker, other clients' included, so a dashboard subscribed to `alerts/#` also got the retained
    catalogue. Retained messages go only to a session that holds the subscription.

    A Last Will amqtt sends (a connection lost without DISCONNECT: amqtt's own condition) is also handed to
    every plugin with a `receive_will(client_id, topic, payload)` coroutine, as a client PUBLISH reaches
    `on_broker_message_broadcast`; amqtt fires no event for it. (Wills the topic ACL refuses were dropped
    at CONNECT: amqtt_plugin.WillAclPlugin.)"""

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        holders = self.subscriptions.get(subscription[0], ())
        if any(holder.client_id == session.client_id for holder, _ in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        result = disconnect_waiter.result()
        if not isinstance(result, DisconnectPacket) and client_session.will_flag and client_session.will_topic:
            for plugin in self.plugins_manager.plugins:
                receive = getattr(plugin, "receive_will", None)
                if receive is not None:
                    await receive(client_session.client_id, client_session.will_topic,
                                  bytes(client_session.will_message or b""))
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)


def delivering(broker: Broker) -> bool:
    """The broker still has messages to route or deliveries running (amqtt has no public "flush")."""
    return not broker._broadcast_queue.empty() or any(not task.done() for task in broker._tasks_queue)


def backlog(broker: Broker) -> int:
    """Messages handed to the broker and not yet routed (its broadcast queue): what our drain waits on."""
    return broker._broadcast_queue.qsize()
