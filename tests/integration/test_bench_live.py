"""`arros bench --quick` end to end: every section runs against real processes, the JSON has the shape
the README documents, and every row of every run is accounted for. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert ingest["ceiling_msgs_per_s"] > 0
    cases = {(run["payload"], run["query"]) for run in ingest["runs"]}
    assert cases == {(p, q) for p in ("json", "json, no WAL", "msgpack", "json-batch100") for q in ("filter", "window")}
    for run in ingest["runs"]:
        assert run["zero_loss"] and run["lost_rows"] == 0 and run["problems"] == []
        assert run["rows"] == 5000 and run["msgs_per_s"] > 0 and run["rows_per_s"] >= run["msgs_per_s"]
        assert run["rss_peak_mb"] >= run["rss_idle_mb"] > 0 and run["ratio_to_ceiling"] > 0

    assert {run["rate"] for run in report["latency"]["runs"]} == {1_000, 10_000}
    for run in report["latency"]["runs"]:
        assert run["complete"] and run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"] <= run["max_ms"]

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
    assert {row["target"].split()[0] for row in report["targets"]} >= {"ingest", "latency", "replay"}
    assert "Targets" in done.stdout and "zero loss: yes" in done.stdout


def test_bench_rejects_an_unknown_section() -> None:
    done = arros_command("bench", "--sections", "ingest,warp")
    assert done.returncode == 2
    assert "unknown section 'warp'" in done.stderr and "Traceback" not in done.stderr
