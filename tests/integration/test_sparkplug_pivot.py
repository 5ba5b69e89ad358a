"""Sparkplug metrics pivoted into columns per device and second by a live windowed subscription,
checked against DuckDB over the metrics that were sent."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import orjson
import pyarrow as pa

from arros_mqtt.vendor import sparkplug_b_pb2 as pb
from tests.support import Collector, publish_all, running_service, unique

T0 = 1_764_000_000_000
PIVOT = """
SELECT tumble(timestamp, INTERVAL '1 second') AS window, edge_node_id, device_id,
       max(CASE WHEN metric = 'Speed' THEN value_double END) AS speed,
       max(CASE WHEN metric = 'Count' THEN value_int END) AS count,
       bool_or(CASE WHEN metric = 'Running' THEN value_bool END) AS running
FROM line
WHERE message_type IN ('DBIRTH', 'DDATA')
GROUP BY window, edge_node_id, device_id
"""
METRICS = {"Speed": (1, 10, "double_value"), "Count": (2, 4, "long_value"), "Running": (3, 11, "boolean_value")}


def message(seq: int, ts: int, values: dict, birth: bool = False) -> bytes:
    payload = pb.Payload(timestamp=ts, seq=seq)
    for name, value in values.items():
        alias, datatype, field = METRICS[name]
        fields = {"name": name, "datatype": datatype} if birth else {}
        payload.metrics.add(alias=alias, timestamp=ts, **fields, **{field: value})
    return payload.SerializeToString()


def test_live_pivot_matches_duckdb(mosquitto, tmp_path):
    group = unique("g")
    rng = random.Random(5)
    sent: list[dict] = []
    messages = []
    nbirth = pb.Payload(timestamp=T0, seq=0)
    nbirth.metrics.add(name="bdSeq", datatype=4, long_value=0)
    messages.append((f"spBv1.0/{group}/NBIRTH/n1", nbirth.SerializeToString()))
    seq = 1
    for device in ("d1", "d2"):
        values = {"Speed": 1.0, "Count": 0, "Running": False}
        messages.append((f"spBv1.0/{group}/DBIRTH/n1/{device}", message(seq, T0, values, birth=True)))
        sent += [{"device": device, "ts": T0, "metric": k, "value": v} for k, v in values.items()]
        seq += 1
    for i in range(1, 40):
        device = rng.choice(["d1", "d2"])
        ts = T0 + i * 75
        values = {k: v for k, v in {"Speed": round(rng.uniform(0, 30), 2), "Count": rng.randrange(1000),
                                    "Running": rng.random() > 0.3}.items() if rng.random() > 0.2}
        messages.append((f"spBv1.0/{group}/DDATA/n1/{device}", message(seq % 256, ts, values)))
        sent += [{"device": device, "ts": ts, "metric": k, "value": v} for k, v in values.items()]
        seq += 1
    # Far later data moves the watermark (2 s) past every window above.
    messages.append((f"spBv1.0/{group}/DDATA/n1/d1", message(seq % 256, T0 + 10_000, {"Count": 1})))
    config = f"""
[control]
prefix = "{group}/arros"
[streams.line]
topic = "spBv1.0/{group}/#"
format = "sparkplug"
event_time = "timestamp"
watermark = "2s"
[subscriptions.pivot]
sql = \"\"\"{PIVOT}\"\"\"
output = "{group}/pivot/{{device_id}}"
"""
    con = duckdb.connect()
    con.register("sent", pa.Table.from_pylist([{**r, "value": str(r["value"])} for r in sent]))
    expected = con.sql("""
        SELECT (ts // 1000) * 1000 AS start, device,
               max(CASE WHEN metric = 'Speed' THEN value::DOUBLE END) AS speed,
               max(CASE WHEN metric = 'Count' THEN value::BIGINT END) AS count,
               bool_or(CASE WHEN metric = 'Running' THEN value = 'True' END) AS running
        FROM sent GROUP BY ALL ORDER BY ALL""").fetchall()
    with running_service(config, tmp_path, mosquitto.url):
        out = Collector(mosquitto.port, [f"{group}/pivot/#"])
        publish_all(mosquitto.port, messages)
        got = [orjson.loads(p) for _, p in out.wait_for(len(expected))]
        out.close()
    def start_ms(text: str) -> int:
        return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

    rows = sorted((start_ms(r["window"]["start"]), r["device_id"], r["speed"], r["count"], r["running"])
                  for r in got)
    assert rows == [tuple(r) for r in expected]
    assert all(r["edge_node_id"] == "n1" for r in got)
