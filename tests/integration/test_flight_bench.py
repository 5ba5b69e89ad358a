"""benchmarks/flight_scan.py at a small size: `arros run` serves its archive, both queries through Flight SQL
give DuckDB's rows (what `arros bench --sections flight` reports on)."""

from __future__ import annotations

from benchmarks import flight_scan


def test_flight_scan_benchmark_matches_duckdb(tmp_path):
    result = flight_scan.run(50_000, progress=lambda _text: None, directory=tmp_path)
    assert result["ok"], result
    scan = result["queries"]["scan"]["flight"]
    assert scan["rows"] == 50_000 and scan["first_batch_s"] is not None and scan["service_peak_rss_mb"] > 0
    assert result["queries"]["group by"]["flight"]["rows"] == 1024
