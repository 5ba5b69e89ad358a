"""A full disk under the write-ahead log and the archive: reported, nothing acknowledged, nothing lost.

The state_dir and the archive live on a 4 MB tmpfs (needs root, as in CI; skipped otherwise). While a
filler file takes all its space, published messages stay unacknowledged at the broker and produce no
output; once the space returns, everything is logged, processed, published and archived, once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import duckdb
import orjson
import pytest

from tests.support import Collector, publish_all, running_service, unique


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk) -> None:
    """Take every byte left (big chunks first, then ever smaller ones); again takes what was freed since."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"x" * chunk)
    finally:
        os.close(fd)


def wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def stalled_output(out: Collector, service, disk, tries: int = 6) -> int:
    """The output count once processing has stood still for longer than the log's retry interval.

    Space comes back by itself while the disk is full: a failed archive file is deleted, and the log's
    next retry may then fit a batch. So fill again before each look, until nothing moves.
    """
    for _ in range(tries):
        fill(disk)
        before = len(out.messages)
        time.sleep(2.5)
        if service.journal.error is not None and len(out.messages) == before:
            return before
    raise AssertionError(f"processing did not stall: {len(out.messages)} outputs, error {service.journal.error}")


def test_full_disk_is_reported_keeps_messages_unacknowledged_and_recovers(mosquitto, tmp_path, tiny_disk):
    prefix = unique()
    config = f"""
[broker]
client_id = "{unique('arros-')}"
[engine]
state_dir = "{tiny_disk / 'state'}"
[archive]
dir = "{tiny_disk / 'archive'}"
roll_interval = "2s"
[control]
prefix = "{prefix}/arros"
[streams.telemetry]
topic = "{prefix}/in/{{machine}}"
schema = {{ seq = "int64", note = "string" }}
archive = true
[subscriptions.copy]
sql = "SELECT machine, seq FROM telemetry"
output = "{prefix}/out/{{machine}}"
"""
    # incompressible notes: the open archive file needs more than the page a tmpfs file already has
    messages = [(f"{prefix}/in/m{i % 4}", orjson.dumps({"seq": i, "note": os.urandom(100).hex()})) for i in range(600)]
    out = Collector(mosquitto.port, [f"{prefix}/out/#"])
    with running_service(config, tmp_path, mosquitto.url) as service:
        publish_all(mosquitto.port, messages[:200])
        assert wait_until(lambda: len(out.messages) == 200)
        fill(tiny_disk)
        publish_all(mosquitto.port, messages[200:])
        assert wait_until(lambda: service.journal.error is not None), "the full disk was not noticed"
        assert wait_until(lambda: service.archive.failed_seq() is not None), [
            (w.rows_written, w.rows_lost, w.files_written, w.open_rows) for w in service.archive._writers.values()]
        # A batch may still fit in the log file's last page, or in the space a failed archive file gave
        # back: processing stops with the first batch that cannot be logged, not necessarily at 200.
        stalled = stalled_output(out, service, tiny_disk)
        assert stalled < 600  # nothing more is processed while the log cannot be written
        assert service.ledger.unacknowledged > 0 and service.ledger.acked == stalled
        assert "No space left" in service.journal.error or "disk full" in service.journal.error
        os.unlink(tiny_disk / "filler")
        assert wait_until(lambda: len(out.messages) == 600, timeout=30), len(out.messages)
        assert wait_until(lambda: service.ledger.unacknowledged == 0)
        assert service.journal.error is None
        assert wait_until(lambda: service.archive.failed_seq() is None, timeout=30)
    out.close()
    seqs = sorted(orjson.loads(payload)["seq"] for _, payload in out.messages)
    assert seqs == list(range(600))
    archived = duckdb.sql(f"SELECT seq FROM read_parquet('{tiny_disk}/archive/streams/telemetry/**/*.parquet') "
                          "ORDER BY seq").fetchall()
    assert [s for (s,) in archived] == list(range(600))
