"""`arros check` (a subprocess) on aggregate subscriptions: window shapes described, a refused one in one line."""

from __future__ import annotations

from tests.support import arros_command


def test_arros_check_reports_window_shapes(tmp_path):
    config = tmp_path / "arros.toml"
    base = """
[broker]
url = "mqtt://127.0.0.1:1"
[streams.telemetry]
topic = "f/{machine}"
schema = { ts = "timestamp[ms]", temp = "float64" }
event_time = "ts"
watermark = "5s"
[subscriptions.avg_temp]
output = "derived/{machine}"
"""
    config.write_text(base + """sql = "SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, avg(temp) AS a """
                      """FROM telemetry GROUP BY window, machine"\n""")
    ok = arros_command("check", "-c", str(config))
    assert ok.returncode == 0, ok.stderr
    assert "subscription avg_temp: windowed (tumble 10s, partial aggregates) on telemetry" in ok.stdout
    assert "window struct<start: timestamp[ms, tz=UTC], end: timestamp[ms, tz=UTC]>" in ok.stdout
    config.write_text(base + """sql = "SELECT tumble(_received_at, INTERVAL '10 seconds') AS window, machine, """
                      """count(*) FROM telemetry GROUP BY window, machine"\n""")
    bad = arros_command("check", "-c", str(config))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "subscriptions.avg_temp.sql: tumble() must be over the stream's event-time column 'ts'" in bad.stderr
