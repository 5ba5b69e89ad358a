"""The log keeps the packet ids a restart needs, on a real Mosquitto: redelivered copies of logged messages are
recognised after restarts across checkpoints (the ledger alone: tests/unit/test_ack_ledger.py)."""

from __future__ import annotations

import time

import orjson

from arros_mqtt.durability.wal import ROWS
from tests.support import publish_all, running_service, unique


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
