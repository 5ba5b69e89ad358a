"""QoS 2 results exactly once across a sender crash: the output journal, the paho subclass and a real
Mosquitto. A sender process (tests/peers/qos2_sender.py) stops at three points of the QoS 2 flow and is
killed with SIGKILL; a second sender on the same state and client id recovers, and the log replay
regenerates every output again: the subscriber gets each once. A torn journal tail is cut, and results
wait while the journal cannot be written (a full disk)."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import paho.mqtt.client as mqtt

from arros_mqtt.config import BrokerConfig
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.egress.mqtt_sink import MqttSink
from arros_mqtt.egress.output_journal import OutputJournal
from tests.peers.qos2_sender import outputs, put
from tests.support import ROOT, Collector, unique


def test_qos2_results_reach_the_broker_exactly_once_across_a_sender_kill9(mosquitto, tmp_path):
    prefix, client_id = unique(), unique("arros-")
    collector = Collector(mosquitto.port, [f"{prefix}/#"], qos=2)
    sender = subprocess.Popen([sys.executable, "-m", "tests.peers.qos2_sender", "--url", mosquitto.url,
                               "--client-id", client_id, "--dir", str(tmp_path), "--prefix", prefix],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = sender.stdout.readline()
        assert line.strip() == "ready", line + sender.stdout.read() if sender.poll() is not None else line
    finally:
        sender.kill()
        sender.wait(10)
    time.sleep(0.3)
    assert len(collector.messages) == 11  # records 1..10 (two outputs of 5); the rest awaits a PUBREL

    # restart: recover the journal, then the log replay regenerates every output after confirmed (0)
    position = LogPosition()
    sink = MqttSink(BrokerConfig(url=mosquitto.url, client_id=client_id), spill_dir=tmp_path / "spill",
                    position=position, journal_dir=tmp_path / "outbox")
    confirmed = sink.outputs.recover()
    pending = sink.journal.pending.values()
    assert len(pending) == 20 and sum(e.released for e in pending) == 10
    sink.outputs.start_replay(confirmed)
    put(sink, position, outputs(prefix, 1, 40))
    sink.outputs.end_replay()
    assert sink.outputs.queued == 10  # only 31..40 are new to the broker
    sink.start(wait=10)
    assert sink.flush(20)
    expected = sorted(orjson.loads(p)["i"] for _, _, p in outputs(prefix, 1, 40))
    got = collector.wait_for(len(expected), timeout=20)
    sink.stop()
    collector.close()
    assert sorted(orjson.loads(p)["i"] for _, p in got) == expected  # each once (record 5: its two)
    reopened = OutputJournal(tmp_path / "outbox")
    reopened.open()
    assert reopened.pending == {}


def test_a_torn_journal_tail_is_cut_and_packet_ids_are_never_reused_while_pending(mosquitto, tmp_path):
    journal = OutputJournal(tmp_path)
    journal.open()
    from arros_mqtt.egress.output_journal import Entry

    journal.published([Entry(7, 1, "a/b", b"x", False), Entry(8, 2, "a/b", b"y", True)])
    journal.released([7])
    journal.sync()
    journal.complete(7)
    journal.published([Entry(7, 3, "a/c", b"z", False)])  # id 7 reused after its PUBCOMP
    journal.sync()
    journal.close()
    with open(journal.path, "ab") as handle:
        handle.write(b"\x01\x02\x03 torn")
    again = OutputJournal(tmp_path)
    again.open()
    assert sorted(again.pending) == [7, 8] and again.pending[7].payload == b"z" and not again.pending[8].released
    assert again.sent_outputs() == {(1, "a/b", b"x"): 1, (2, "a/b", b"y"): 1, (3, "a/c", b"z"): 1}
    again.confirm(1)  # record 1's outputs are all acknowledged: its completed entry goes
    assert again.sent_outputs() == {(2, "a/b", b"y"): 1, (3, "a/c", b"z"): 1}
    again.sync()
    again.close()
    third = OutputJournal(tmp_path, compact_bytes=1)  # compacted at every sync
    third.open()
    assert third.confirmed == 1 and sorted(third.pending) == [7, 8] and third.completed == []

    broker = BrokerConfig(url=mosquitto.url, client_id=unique("arros-"))
    sink = MqttSink(broker, journal_dir=tmp_path / "o")
    sink.client.preload(again.pending.values())
    assert {sink.client.reserve_mid() for _ in range(3)}.isdisjoint({7, 8})
    assert isinstance(sink.client, mqtt.Client)


def test_qos2_results_wait_while_the_journal_cannot_be_written(mosquitto, tmp_path):
    import os

    prefix = unique()
    collector = Collector(mosquitto.port, [f"{prefix}/#"], qos=2)
    position = LogPosition()
    sink = MqttSink(BrokerConfig(url=mosquitto.url, client_id=unique("arros-")), position=position,
                    journal_dir=tmp_path / "outbox")
    sink.outputs.recover()
    sink.start(wait=10)
    journal = sink.journal
    os.close(journal._fd)
    journal._fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, as on a full disk
    put(sink, position, outputs(prefix, 1, 5))
    assert sink.outputs.journal_error is not None and "No space" in sink.outputs.journal_error
    assert sink.outputs.queued == 6 and sink.outputs.sent == 0 and journal.pending == {}
    os.close(journal._fd)
    journal._fd = os.open(journal.path, os.O_WRONLY | os.O_APPEND)  # space again
    sink.outputs.pump()
    assert sink.flush(10) and sink.outputs.journal_error is None
    got = collector.wait_for(6, timeout=10)
    sink.stop()
    collector.close()
    assert sorted(orjson.loads(p)["i"] for _, p in got) == [1, 2, 3, 4, 5, 5]
    reopened = OutputJournal(tmp_path / "outbox")
    reopened.open()
    assert reopened.pending == {}  # the withdrawn first attempt left nothing to send again
