"""PUBACKs in arrival order once rows are durable; redelivered copies of logged messages are dropped."""

from __future__ import annotations

import time

import orjson

from arros_mqtt.durability.wal import ROWS
from arros_mqtt.ingress.acks import AckLedger
from tests.support import publish_all, running_service, unique


def ledger() -> tuple[AckLedger, list[int]]:
    sent: list[int] = []
    return AckLedger(sent.append), sent


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


def test_the_log_keeps_the_packet_ids_a_restart_remembers_across_checkpoints(mosquitto, tmp_path):
    """Each run's final checkpoint would let the log drop the previous runs' files; the records with the
    last RECENT packet ids stay, so a restart still recognises redelivered copies of their messages."""
    prefix = unique()
    config = f"""
[broker]
client_id = "{unique('arros-')}"
[engine]
state_dir = "{tmp_path / 'state'}"
[durability]
checkpoint_interval = "200ms"
[control]
prefix = "{prefix}/arros"
[streams.telemetry]
topic = "{prefix}/in"
schema = {{ seq = "int64" }}
qos = 1
"""
    for run in range(3):
        with running_service(config, tmp_path, mosquitto.url) as service:
            logged = [len(r.mids) for r in service.journal.wal.records(kinds=(ROWS,), tables=False)]
            assert sum(logged) == 100 * run, logged
            if run < 2:
                rows = [(f"{prefix}/in", orjson.dumps({"seq": run * 100 + i})) for i in range(100)]
                publish_all(mosquitto.port, rows)
                deadline = time.monotonic() + 20
                while service.ledger.acked < 100 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert service.ledger.acked == 100
    assert len(list((tmp_path / "state" / "wal").glob("wal-*.log"))) >= 2  # checkpoints were promoted meanwhile
