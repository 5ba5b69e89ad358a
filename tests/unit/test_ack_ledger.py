"""PUBACKs in arrival order once rows are durable; redelivered copies of logged messages are dropped."""

from __future__ import annotations

from arros_mqtt.ingress.acks import AckLedger


def ledger() -> tuple[AckLedger, list[int]]:
    sent: list[int] = []
    return AckLedger(sent.extend), sent  # PUBACKs are sent in lists, one write each


def test_acks_follow_arrival_order_across_streams():
    acks, sent = ledger()
    for mid, stream in ((1, "a"), (2, "b"), (3, "a"), (4, "a")):
        assert acks.received(mid, 1, False, (stream,))
    first = acks.take("a", 2)  # messages 1 and 3: a micro-batch of stream a
    assert acks.mids(first).tolist() == [1, 3]
    acks.durable(first)
    assert sent == [1]  # 3 waits for 2 (stream b), which arrived before it
    acks.durable(acks.take("b", 1))
    assert sent == [1, 2, 3]
    acks.durable(acks.take("a", 1))
    assert sent == [1, 2, 3, 4] and acks.unacknowledged == 0


def test_a_message_of_two_streams_waits_for_both_and_qos0_needs_no_ack():
    acks, sent = ledger()
    assert acks.received(5, 1, False, ("a", "b"))
    assert acks.received(0, 0, False, ("a",))
    assert acks.received(6, 1, False, ())  # routed to no stream: nothing to wait for
    acks.durable(acks.take("a", 2))
    assert sent == []
    acks.durable(acks.take("b", 1))
    assert sent == [5, 6]


def test_redelivered_copies_of_logged_messages_are_dropped():
    acks, sent = ledger()
    assert acks.received(7, 1, False, ("a",))
    assert not acks.received(7, 1, True, ("a",))  # resent after a reconnect while still pending
    acks.durable(acks.take("a", 1))
    assert sent == [7]
    assert not acks.received(7, 1, True, ("a",))  # our PUBACK was lost: acknowledged again, not logged twice
    assert sent == [7, 7] and acks.duplicates == 2
    assert acks.received(7, 1, False, ("a",))  # a new message that reuses the id (no DUP flag)
    acks.remember([9])  # from the log at start
    assert not acks.received(9, 1, True, ("a",))
    assert acks.received(10, 1, True, ("a",))  # DUP but never logged: it is new to us
