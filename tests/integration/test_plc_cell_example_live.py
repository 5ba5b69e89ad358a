"""examples/plc_cell: the config checks, and its three ways in (Modbus connector, Sparkplug B edge node,
Neuron JSON) each reach a derived topic; the README's pivot query gives one row per device and
timestamp in DuckDB and DataFusion alike."""

from __future__ import annotations

import datafusion
import duckdb
import orjson
import pyarrow as pa
from pymodbus.client import ModbusTcpClient

from arros_mqtt.config import parse_config
from arros_mqtt.decode.sparkplug.decoder import SparkplugDecoder
from arros_mqtt.vendor import sparkplug_b_pb2 as pb
from tests.plc_servers import modbus_server
from tests.support import ROOT, Collector, arros_command, publish_all, running_service, unique

EXAMPLE = ROOT / "examples" / "plc_cell" / "arros.toml"
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


def test_example_checks():
    done = arros_command("check", "-c", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "connector press1: modbus://127.0.0.1:5020 unit 1: temp [°C]" in done.stdout


def sparkplug(seq: int, *metrics: dict, ts: int = 1_764_000_000_000) -> bytes:
    payload = pb.Payload(timestamp=ts, seq=seq)
    for metric in metrics:
        payload.metrics.add(**metric)
    return payload.SerializeToString()


def test_the_cell_end_to_end(mosquitto, tmp_path):
    encode, types = ModbusTcpClient.convert_to_registers, ModbusTcpClient.DATATYPE
    holding = encode(900, types.INT16) + [0] * 19 + [100, 101, 102, 103]
    server = modbus_server(tmp_path, {"holding": holding, "input": [0] * 10 + encode(2.5, types.FLOAT32), "coil": [1]})
    node, neuron_node = unique("edge"), unique("plc")
    text = EXAMPLE.read_text().replace("port = 5020", f"port = {server.port}")
    try:
        with running_service(text, tmp_path, mosquitto.url):
            press = Collector(mosquitto.port, ["cell/alerts/press1/overheat"])
            slow = Collector(mosquitto.port, [f"cell/alerts/{node}/#"])
            neuron = Collector(mosquitto.port, [f"cell/neuron/{neuron_node}"])
            publish_all(mosquitto.port, [
                (f"spBv1.0/line1/NBIRTH/{node}", sparkplug(0, {"name": "bdSeq", "datatype": 8, "long_value": 0})),
                (f"spBv1.0/line1/DBIRTH/{node}/conveyor", sparkplug(1, {"name": "Speed", "alias": 4, "datatype": 10,
                                                                        "double_value": 42.0})),
                (f"spBv1.0/line1/DDATA/{node}/conveyor", sparkplug(2, {"alias": 4, "double_value": 3.5})),
                (f"neuron/{neuron_node}/fast", orjson.dumps({"node": neuron_node, "group": "fast",
                                                             "timestamp": 1_764_000_000_000,
                                                             "values": {"speed": 12.5, "count": 7}, "errors": {}})),
                (f"neuron/{neuron_node}/fast", orjson.dumps({"node": neuron_node, "group": "fast",
                                                             "timestamp": 1_764_000_000_100, "values": {"count": 8},
                                                             "errors": {"speed": 3}})),
            ])
            got_press = orjson.loads(press.wait_for(1)[0][1])
            got_slow = [(t, orjson.loads(p)) for t, p in slow.wait_for(1)]
            got_neuron = [orjson.loads(p) for _, p in neuron.wait_for(1)]
            for collector in (press, slow, neuron):
                collector.close()
    finally:
        server.stop()
    assert {k: got_press[k] for k in ("press", "temp", "pressure")} == {"press": "press1", "temp": 900 * 0.1,
                                                                       "pressure": 2.5}
    assert got_slow == [(f"cell/alerts/{node}/conveyor/slow", {"edge_node_id": node, "device_id": "conveyor",
                                                               "timestamp": "2025-11-24T16:00:00.000Z", "speed": 3.5})]
    assert got_neuron == [{"node_name": neuron_node, "timestamp": "2025-11-24T16:00:00.000Z", "speed": 12.5,
                           "count": 7}]


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
