"""The benchmark's own MQTT packets, its cases and its targets over a made-up report: the instrument and
the verdicts, without a broker or Arros (the client against a scripted peer: tests/integration/test_bench_live.py)."""

from __future__ import annotations

from benchmarks import mqtt_wire
from benchmarks.arros_process import cpu_per_1k_msgs_per_s
from benchmarks.ingest import CASES, Case
from benchmarks.targets import targets


def test_wire_packets_round_trip() -> None:
    """The benchmark's own MQTT encoder: remaining lengths across the 1/2/3-byte boundaries."""
    for size in (0, 127, 128, 16_383, 16_384, 100_000):
        packet = mqtt_wire.publish_packet(b"t/1", b"x" * size)
        header, start, end = mqtt_wire._split(bytearray(packet))
        assert header >> 4 == mqtt_wire.PUBLISH and end == len(packet)
        assert packet[start:start + 5] == b"\x00\x03t/1" and end - start == 5 + size
    assert mqtt_wire._split(bytearray(mqtt_wire.publish_packet(b"t", b"x" * 200)[:-1])) is None


def test_qos1_packets_carry_their_packet_id() -> None:
    packet = mqtt_wire.publish_packet(b"t/1", b"{}", qos=1, packet_id=mqtt_wire.nth_packet_id(65_535))
    header, start, end = mqtt_wire._split(bytearray(packet))
    assert header == 0x32 and packet[start + 5:start + 7] == b"\x00\x01" and packet[start + 7:end] == b"{}"
    assert mqtt_wire.nth_packet_id(0) == 1 and mqtt_wire.nth_packet_id(65_534) == 65_535
    assert mqtt_wire.subscribe_packet(1, ["a/#"], qos=1).endswith(b"a/#\x01")


def test_cpu_per_1k_msgs_per_s_is_cpu_seconds_per_1000_messages() -> None:
    """0.5 CPU s over 10 s at 20k msg/s: 0.0025 of a core per 1,000 msg/s, i.e. 0.5 s / 200 (k messages)."""
    assert cpu_per_1k_msgs_per_s(0.5, 20_000, 10) == 0.5 / 200


def test_cases_label_the_qos_results_get_by_default() -> None:
    by_key = {(case.group, case.label, case.query): case for case in CASES}
    assert by_key[("defaults", "json", "window")].results_qos == 2
    assert by_key[("defaults", "json", "filter")].results_qos == 1
    assert by_key[("defaults", "json, results QoS 2", "per-row")].subscriptions()["rows"]["qos"] == 2
    assert "qos" not in by_key[("defaults", "json", "per-row")].subscriptions()["rows"]
    assert Case("json", "window", wal=False).results_qos == 1 and by_key[("qos0", "json", "window")].results_qos == 0


def _ingest_run(query: str, payload: str = "json", **values: object) -> dict:
    run = {"group": "defaults", "label": payload, "payload": payload, "query": query, "zero_loss": True,
           "rows_per_message": 100 if "batch" in payload else 1, "results_qos": 1, "msgs_per_s": 20_000.0,
           "rows_per_s": 20_000.0, "results_per_s": None, "ratio_to_qos1_ceiling": 1.0, "rss_idle_mb": 100.0}
    return {**run, **values}


def test_targets_are_ratios_to_the_same_runs_relay_ceiling() -> None:
    report = {"ingest": {"ceilings": {"qos1": {"msgs_per_s": 20_000.0}}, "runs": [
        _ingest_run("filter", ratio_to_qos1_ceiling=0.95),
        _ingest_run("window", ratio_to_qos1_ceiling=0.85),
        _ingest_run("per-row", results_per_s=9_000.0, ratio_to_qos1_ceiling=0.45),
        _ingest_run("per-row", results_qos=2, results_per_s=8_000.0, ratio_to_qos1_ceiling=0.4),
        _ingest_run("filter", "msgpack-batch100", rows_per_s=1_200_000.0, zero_loss=False, rss_idle_mb=130.0),
        {**_ingest_run("filter"), "group": "qos0", "rss_idle_mb": 500.0},  # tuned rows are no target
    ]}, "subscriptions": {"runs": []}}
    verdicts = {row["key"]: row["met"] for row in targets(report)}
    assert verdicts == {"ingest_json_filter": True, "ingest_json_window": False, "per_row_results_qos1": True,
                        "per_row_results_qos2": False, "arrays_msgpack-batch100_filter": False, "rss_idle": False,
                        "many_windows_lag": None}
