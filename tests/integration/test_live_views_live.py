"""The live views of a running service, in both modes: devices publish through the broker (and bad
payloads too); the views hold what DuckDB computes over the same input."""

from __future__ import annotations

import time

import duckdb
import orjson
import pyarrow as pa

from tests.support import unique


def config(prefix: str) -> str:
    return f"""
[control]
prefix = "{prefix}/arros"

[live]
max_rows = 50

[streams.telemetry]
topic = "{prefix}/f/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", rpm = "int64" }}

[subscriptions.per_machine]
sql = "SELECT machine, count(*) AS n, sum(rpm) AS total FROM telemetry GROUP BY machine"
output = "{prefix}/out/{{machine}}"
"""


def test_live_views_follow_the_published_rows(broker, tmp_path):
    prefix = unique("live")
    rows = [{"machine": f"m{i % 3}", "ts": 1_800_000_000_000 + i, "rpm": i * 7} for i in range(120)]
    messages = [(f"{prefix}/f/{r['machine']}/telemetry", orjson.dumps(r)) for r in rows]
    messages.append((f"{prefix}/f/m9/telemetry", b"{not json"))
    with broker.service(config(prefix), tmp_path) as service:
        broker.publish_all(messages)
        views = service.live
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (views.system_streams()["rows"][0].as_py() < 120
                                               or views.system_dead_letters().num_rows < 1):
            time.sleep(0.05)
        con = duckdb.connect()
        con.register("seen", pa.Table.from_pylist(rows))
        expected = con.sql("SELECT machine, count(*) AS n, sum(rpm) AS total FROM seen GROUP BY machine "
                              "ORDER BY machine").fetchall()
        latest = views.subscription("per_machine").sort_by("machine")
        recent = views.stream("telemetry")
        letters = views.system_dead_letters().to_pylist()
    assert [tuple(r.values()) for r in latest.to_pylist()] == expected
    assert recent.num_rows == 50 and recent["rpm"].to_pylist() == [r["rpm"] for r in rows[-50:]]
    assert len(letters) == 1 and letters[0]["payload"] == b"{not json" and letters[0]["stream"] == "telemetry"
    subscription = views.system_subscriptions().to_pylist()[0]
    assert subscription["name"] == "per_machine" and subscription["rows_in"] == 120
