"""examples/plc_cell without a broker: the README's pivot query gives one row per device and timestamp in
DuckDB and DataFusion alike."""

from __future__ import annotations

import datafusion
import duckdb
import pyarrow as pa

from arros_mqtt.config import parse_config
from arros_mqtt.decode.sparkplug.decoder import SparkplugDecoder
from arros_mqtt.vendor import sparkplug_b_pb2 as pb

PIVOT_SQL = """
SELECT group_id, edge_node_id, device_id, timestamp,
       max(CASE WHEN metric = 'temp' THEN value_double END) AS temp,
       max(CASE WHEN metric = 'count' THEN value_int END) AS count,
       bool_or(CASE WHEN metric = 'running' THEN value_bool END) AS running
FROM line
WHERE message_type IN ('DBIRTH', 'DDATA')
GROUP BY group_id, edge_node_id, device_id, timestamp
ORDER BY device_id, timestamp
"""


def sparkplug(seq: int, *metrics: dict, ts: int = 1_764_000_000_000) -> bytes:
    payload = pb.Payload(timestamp=ts, seq=seq)
    for metric in metrics:
        payload.metrics.add(**metric)
    return payload.SerializeToString()


def test_readme_pivot_query_gives_one_row_per_device_and_timestamp():
    stream = parse_config({"streams": {"line": {"topic": "spBv1.0/#", "format": "sparkplug"}}}).streams["line"]
    decoder = SparkplugDecoder(stream, lambda *args: None)
    t0 = 1_764_000_000_000
    messages = [
        ("spBv1.0/g/NBIRTH/n1", sparkplug(0, {"name": "bdSeq", "datatype": 8, "long_value": 0}, ts=t0)),
        ("spBv1.0/g/DBIRTH/n1/d1", sparkplug(1, {"name": "temp", "alias": 1, "datatype": 10, "double_value": 20.0},
                                             {"name": "count", "alias": 2, "datatype": 4, "long_value": 1},
                                             {"name": "running", "alias": 3, "datatype": 11, "boolean_value": False},
                                             ts=t0)),
        ("spBv1.0/g/DDATA/n1/d1", sparkplug(2, {"alias": 1, "double_value": 21.5}, {"alias": 3, "boolean_value": True},
                                            ts=t0 + 100)),
        ("spBv1.0/g/DDATA/n1/d1", sparkplug(3, {"alias": 2, "long_value": 2}, ts=t0 + 200)),
    ]
    table, bad = decoder.decode([t for t, _ in messages], [p for _, p in messages], [t0] * len(messages))
    assert not bad
    con = duckdb.connect()
    con.register("line", table)
    from_duckdb = con.sql(PIVOT_SQL).to_arrow_table()
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("line", [table.to_batches()])
    from_datafusion = pa.Table.from_batches(ctx.sql(PIVOT_SQL).collect())
    expected = [
        {"temp": 20.0, "count": 1, "running": False},
        {"temp": 21.5, "count": None, "running": True},
        {"temp": None, "count": 2, "running": None},
    ]
    for result in (from_duckdb, from_datafusion):
        rows = result.to_pylist()
        assert [{k: r[k] for k in ("temp", "count", "running")} for r in rows] == expected
        assert {(r["group_id"], r["edge_node_id"], r["device_id"]) for r in rows} == {("g", "n1", "d1")}
