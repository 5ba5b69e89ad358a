"""`arros bench --quick` end to end: every section runs against real processes, the JSON has the shape
docs/performance.md documents, and every row of every run is accounted for. No timing is asserted.
Also the benchmark's bare MQTT client (the QoS 1 publisher and receiver) against a scripted peer on
127.0.0.1: the instrument must not lose or double-count acknowledgements."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import mqtt_wire
from tests.support import arros_command

SECTIONS = "ingest,latency,memory,subscriptions,replay"


def test_bench_quick_reports_every_section_without_loss(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = arros_command("bench", "--quick", "--messages", "5000", "--duration", "4", "--sections", SECTIONS,
                         "--json", str(out), timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["zero_loss"] is True
    assert report["environment"]["cpus"] >= 1 and report["environment"]["versions"]["datafusion"]

    ingest = report["ingest"]
    assert set(ingest["ceilings"]) == {"qos0", "qos1"}
    for ceiling in ingest["ceilings"].values():
        assert ceiling["msgs_per_s"] > 0 and len(ceiling["runs_msgs_per_s"]) == 1
    _check_ingest_runs(ingest["runs"])

    assert {(run["rate"], run["variant"]) for run in report["latency"]["runs"]} == {
        (rate, variant) for rate in (1_000, 10_000) for variant in ("defaults", "QoS 0 (tuned)")}
    for run in report["latency"]["runs"]:
        assert run["complete"] and run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"] <= run["max_ms"]
        assert run["cpu_s_per_1k_msgs_per_s"] > 0 and run["rss_peak_mb"] >= run["rss_idle_mb"] > 0

    memory = report["memory"]
    assert memory["zero_loss"] and memory["rss_idle_mb"] > 0 and len(memory["samples"]) >= 3

    subscriptions = report["subscriptions"]
    assert {(r["kind"], r["subscriptions"]) for r in subscriptions["runs"]} == {
        (k, n) for k in ("filter", "window") for n in (10, 100)}
    for run in subscriptions["runs"]:
        assert run["zero_loss"] and run["cpu_per_s"] > 0 and "rss_per_subscription_kb" in run

    replay = report["replay"]["runs"]
    assert set(replay) == {"duckdb", "engine", "pipeline"}
    assert replay["engine"]["matches_duckdb"] and replay["pipeline"]["matches_duckdb"]
    _check_targets(report["targets"])
    assert "Targets" in done.stdout and "zero loss: yes" in done.stdout
    assert "QoS 1 relay" in done.stdout and "QoS 0 (tuned)" in done.stdout and "CPU s/1k" in done.stdout


def _check_ingest_runs(runs: list[dict]) -> None:
    """The default rows and the tuned QoS 0 rows (--quick: not the no-WAL ones), each without loss, with CPU and RSS."""
    cases = {(run["group"], run["label"], run["query"]) for run in runs}
    defaults = {("defaults", payload, query) for payload in ("json", "msgpack", "json-batch100", "msgpack-batch100")
                for query in ("filter", "window")}
    defaults |= {("defaults", "json", "per-row"), ("defaults", "json, results QoS 2", "per-row")}
    assert cases == defaults | {("qos0", "json", query) for query in ("filter", "window", "per-row")}
    for run in runs:
        assert run["zero_loss"] and run["lost_rows"] == 0 and run["problems"] == []
        assert run["rows"] == 5000 and run["msgs_per_s"] > 0 and run["rows_per_s"] >= run["msgs_per_s"]
        # >= 0: a quick run of 5,000 rows in arrays (50 messages) can cost less than one clock tick of CPU
        assert run["rss_peak_mb"] >= run["rss_idle_mb"] > 0 and run["cpu_s_per_1k_msgs_per_s"] >= 0
        assert run["ratio_to_qos0_ceiling"] > 0 and run["ratio_to_qos1_ceiling"] > 0
        assert run["ratio_to_ceiling"] == run[f"ratio_to_{run['ceiling']}_ceiling"]
        assert run["ceiling"] == ("qos1" if run["group"] == "defaults" else "qos0")
        if run["query"] == "per-row":
            assert run["results_per_s"] > 0 and run["messages_out"] == run["messages_out_expected"] == 5000
    results_qos = {(run["label"], run["query"]): run["results_qos"] for run in runs if run["group"] == "defaults"}
    assert results_qos[("json", "filter")] == 1 and results_qos[("json", "window")] == 2
    assert results_qos[("json, results QoS 2", "per-row")] == 2


def _check_targets(rows: list[dict]) -> None:
    """Every target of issue 15 that a quick run measures, and the 10,000 subscriptions one as not run."""
    keys = {row["key"] for row in rows}
    assert keys >= {"per_row_results_qos1", "per_row_results_qos2", "ingest_json_filter", "ingest_json_window",
                    "arrays_json-batch100_filter", "arrays_msgpack-batch100_window", "latency_defaults_10k",
                    "replay_x_duckdb", "rss_idle", "many_windows_lag"}
    assert all(set(row) == {"key", "target", "measured", "met"} for row in rows)
    assert [row["met"] for row in rows if row["key"] == "many_windows_lag"] == [None]


def test_bench_rejects_an_unknown_section() -> None:
    done = arros_command("bench", "--sections", "ingest,warp")
    assert done.returncode == 2
    assert "unknown section 'warp'" in done.stderr and "Traceback" not in done.stderr


@contextlib.contextmanager
def peer(script: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection MQTT peer on 127.0.0.1: CONNACK, then `script`; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(1 << 16)  # CONNECT
            conn.sendall(bytes([mqtt_wire.CONNACK << 4, 2, 0, 0]))
            script(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        thread.join(10)
        server.close()


def read_packets(conn: socket.socket, buffer: bytearray) -> list[bytes]:
    """The complete packets now in `buffer` after one recv."""
    buffer += conn.recv(1 << 16)
    packets, offset = [], 0
    while (parsed := mqtt_wire._split(buffer, offset)) is not None:
        packets.append(bytes(buffer[offset:parsed[2]]))
        offset = parsed[2]
    del buffer[:offset]
    return packets


def test_the_qos1_sender_keeps_its_window_and_counts_pubacks_split_across_reads() -> None:
    """Acks written in pieces (a PUBACK split over two writes) are counted once each; no more than the
    window is ever unacknowledged."""
    seen: list[int] = []

    def acknowledge(conn: socket.socket) -> None:
        buffer = bytearray()
        while len(seen) < 7:
            for packet in read_packets(conn, buffer):
                _header, start, _end = mqtt_wire._split(bytearray(packet))
                seen.append(struct.unpack_from("!H", packet, start + 2 + packet[start + 1])[0])
                ack = bytes([mqtt_wire.PUBACK << 4, 2]) + struct.pack("!H", seen[-1])
                conn.sendall(ack[:3])
                time.sleep(0.01)
                conn.sendall(ack[3:])

    with peer(acknowledge) as port:
        client = mqtt_wire.WireClient("127.0.0.1", port, "unit-sender")
        sender = mqtt_wire.QosOneSender(client, window=3, stall=10)
        sender.send([mqtt_wire.publish_packet(b"t", b"x", 1, mqtt_wire.nth_packet_id(i)) for i in range(7)])
        assert sender.wait_acked(10) == 0 and sender.acked == 7
        client.close()
    assert seen == [1, 2, 3, 4, 5, 6, 7]


def test_the_receiver_acknowledges_each_read_in_one_write() -> None:
    """Three QoS 1 PUBLISHes in one write: three messages kept, three PUBACKs back in one segment."""
    acks: list[bytes] = []

    def publish(conn: socket.socket) -> None:
        read_packets(conn, bytearray())  # SUBSCRIBE
        conn.sendall(bytes([mqtt_wire.SUBACK << 4, 3, 0, 1, 1]))
        conn.sendall(b"".join(mqtt_wire.publish_packet(b"t", b"%d" % i, 1, 10 + i) for i in range(3)))
        deadline = time.monotonic() + 10
        while sum(map(len, acks)) < 12 and time.monotonic() < deadline:
            acks.append(conn.recv(1 << 16))

    with peer(publish) as port:
        receiver = mqtt_wire.Receiver("127.0.0.1", port, ["t"], "unit-receiver", qos=1)
        assert receiver.wait_for(3, timeout=10)
        time.sleep(0.1)
        receiver.close()
    assert [payload for _, _, payload in receiver.messages] == [b"0", b"1", b"2"]
    assert acks[0] == b"".join(bytes([0x40, 2, 0, 10 + i]) for i in range(3))
