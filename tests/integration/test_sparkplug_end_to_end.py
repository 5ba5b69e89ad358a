"""Sparkplug B end to end on a real Mosquitto: an edge node driven by mqtt-spb-wrapper (an independent
implementation, in a venv of its own) publishes births and data; Arros decodes them as a host
application, a SQL subscription derives messages, a real subscriber receives them (the will after a
kill: tests/faults/test_sparkplug_end_to_end_faults.py)."""

from __future__ import annotations

import base64
import json
import subprocess
import time

import orjson
import pytest

from arros_mqtt.vendor import sparkplug_b_pb2 as pb
from tests.support import ROOT, Collector, publish_all, running_service, unique

SPB_PYTHON = ROOT / ".venv-spb" / "bin" / "python"
EDGE_NODE = ROOT / "tests" / "peers" / "spb_edge_node.py"
SQL = ("SELECT device_id, seq, metric, datatype, value_double, value_int, value_bool, value_string "
       "FROM plc WHERE message_type = 'DDATA'")


def row_key(row: dict) -> tuple:
    return row["seq"], row["metric"]


@pytest.fixture(scope="module")
def spb_python() -> str:
    """The wrapper's own venv (made by `make spb-venv`; made here when pytest runs alone)."""
    subprocess.run([str(ROOT / "scripts" / "ensure-spb-venv.sh"), str(SPB_PYTHON.parent.parent)], check=True,
                   timeout=600)
    return str(SPB_PYTHON)


def config(group: str, host: str) -> str:
    return f"""
[engine]
batch_max_delay = "20ms"

[control]
prefix = "{group}/arros"

[streams.plc]
topic = "spBv1.0/{group}/#"
format = "sparkplug"
host_id = "{host}"
reorder_timeout = "300ms"

[subscriptions.ddata]
sql = "{SQL}"
output = "{group}/out/{{device_id}}"
"""


def run_edge_node(spb_python: str, port: int, group: str, count: int, *extra: str) -> list[dict]:
    done = subprocess.run([spb_python, str(EDGE_NODE), str(port), group, "n1", "d1", str(count), *extra],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def expected_rows(values: list[dict], first_seq: int) -> list[dict]:
    """What the host must make of the wrapper's DDATA messages (its DBIRTH carries seq first_seq - 1)."""
    rows = []
    for i, v in enumerate(values):
        base = {"device_id": "d1", "seq": first_seq + i, "value_double": None, "value_int": None, "value_bool": None,
                "value_string": None}
        rows += [
            {**base, "metric": "temp", "datatype": "Double", "value_double": v["temp"]},
            {**base, "metric": "count", "datatype": "Int64", "value_int": v["count"]},
            {**base, "metric": "running", "datatype": "Boolean", "value_bool": v["running"]},
            {**base, "metric": "state", "datatype": "Text", "value_string": v["state"]},
        ]
    return sorted(rows, key=row_key)


def test_wrapper_edge_node_data_reaches_a_derived_topic(broker, tmp_path, spb_python):
    """On Mosquitto (client mode) and on the embedded broker."""
    group, host = unique("g"), unique("host")
    with broker.service(config(group, host), tmp_path) as service:
        out = broker.collector([f"{group}/out/#"])
        state = broker.collector([f"spBv1.0/STATE/{host}"])  # retained by the broker: Arros is online
        assert orjson.loads(state.wait_for(1)[0][1])["online"] is True
        state.close()
        lines = run_edge_node(spb_python, broker.port, group, 20)
        values = [line for line in lines if "temp" in line]
        expected = expected_rows(values, first_seq=2)
        got = sorted((orjson.loads(p) for _, p in out.wait_for(len(expected))), key=row_key)
        out.close()
        decoder = service.pipeline.decoders["plc"]
        assert {t for t, _ in out.messages} == {f"{group}/out/d1"}
    assert got == expected
    # The wrapper's DDEATH turns the device's four metrics into null rows; its NDEATH carries a bdSeq that
    # does not match its NBIRTH's (the wrapper counts bdSeq across node and device), so it is stale.
    assert service.pipeline.stats["plc"].rows == 4 + 4 + 80 + 4
    assert decoder.stats.stale_deaths == 1 and decoder.stats.rebirth_requests == 0


def test_data_before_birth_gets_a_rebirth_request_the_wrapper_answers(mosquitto, tmp_path, spb_python):
    group, host = unique("g"), unique("host")
    with running_service(config(group, host), tmp_path, mosquitto.url) as service:
        out = Collector(mosquitto.port, [f"{group}/out/#"])
        commands = Collector(mosquitto.port, [f"spBv1.0/{group}/NCMD/#"])
        lines = run_edge_node(spb_python, mosquitto.port, group, 3, "--data-first")
        assert {"rebirth": True} in lines, "the wrapper received and understood the NCMD"
        values = [line for line in lines if "count" in line]
        got = sorted((orjson.loads(p) for _, p in out.wait_for(4 + 12)), key=row_key)
        ncmd = commands.wait_for(1)
        out.close()
        commands.close()
        assert service.pipeline.decoders["plc"].stats.rebirth_requests == 1
    assert [t for t, _ in ncmd] == [f"spBv1.0/{group}/NCMD/n1"]
    request = pb.Payload.FromString(ncmd[0][1])
    assert [(m.name, m.datatype, m.boolean_value) for m in request.metrics] == [("Node Control/Rebirth", 11, True)]
    # The DDATA before any birth still carries names and datatypes: its rows are kept (seq 0); then the
    # births restart seq at 0 (NBIRTH) and 1 (DBIRTH).
    assert got == sorted(expected_rows(values[:1], first_seq=0) + expected_rows(values[1:], first_seq=2), key=row_key)


def test_malformed_payload_is_a_dead_letter_and_others_flow(mosquitto, tmp_path):
    group, host = unique("g"), unique("host")
    birth = pb.Payload(timestamp=1_764_000_000_000, seq=0)
    birth.metrics.add(name="bdSeq", datatype=4, long_value=0)
    dbirth = pb.Payload(timestamp=1_764_000_000_001, seq=1)
    dbirth.metrics.add(name="temp", alias=7, datatype=10, double_value=1.25)
    ddata = pb.Payload(timestamp=1_764_000_000_002, seq=2)
    ddata.metrics.add(alias=7, double_value=2.5)
    with running_service(config(group, host), tmp_path, mosquitto.url):
        out = Collector(mosquitto.port, [f"{group}/out/#"])
        dead = Collector(mosquitto.port, [f"{group}/arros/deadletter/#"])
        publish_all(mosquitto.port, [
            (f"spBv1.0/{group}/NBIRTH/n1", birth.SerializeToString()),
            (f"spBv1.0/{group}/DBIRTH/n1/d1", dbirth.SerializeToString()),
            (f"spBv1.0/{group}/DDATA/n1/d1", b"\x0a\xff\xff"),
            (f"spBv1.0/{group}/DDATA/n1/d1", ddata.SerializeToString()),
        ])
        got = [orjson.loads(p) for _, p in out.wait_for(1)]
        letters = dead.wait_for(1)
        out.close()
        dead.close()
    assert got == [{"device_id": "d1", "seq": 2, "metric": "temp", "datatype": "Double", "value_double": 2.5,
                    "value_int": None, "value_bool": None, "value_string": None}]
    assert len(letters) == 1 and letters[0][0] == f"{group}/arros/deadletter/plc"
    letter = orjson.loads(letters[0][1])
    assert letter["topic"] == f"spBv1.0/{group}/DDATA/n1/d1" and "invalid Sparkplug B payload" in letter["error"]
    assert base64.b64decode(letter["payload_b64"]) == b"\x0a\xff\xff"


def test_alias_scopes_refused_births_and_bounded_rebirths_through_mosquitto(mosquitto, tmp_path):
    """Issue 20 item 10 on a real broker: NDATA alias 1 is the NBIRTH's `speed` although the DBIRTH
    gave alias 1 to `valve_open`; a DBIRTH with one alias twice is a dead letter saying so; 3,000 NDATA
    from never-born nodes get at most the rebirth burst of NCMDs."""
    from arros_mqtt.decode.sparkplug.decoder import REBIRTH_BURST, REBIRTHS_PER_SECOND

    group, host = unique("g"), unique("host")
    text = config(group, host).replace("message_type = 'DDATA'", "message_type IN ('NDATA', 'DDATA')")
    text = text.replace('prefix = "', 'status_interval = "200ms"\nprefix = "')
    nbirth = pb.Payload(timestamp=1_764_000_000_000, seq=0)
    nbirth.metrics.add(name="bdSeq", datatype=4, long_value=0)
    nbirth.metrics.add(name="speed", alias=1, datatype=10, double_value=1.0)
    dbirth = pb.Payload(timestamp=1_764_000_000_001, seq=1)
    dbirth.metrics.add(name="valve_open", alias=1, datatype=11, boolean_value=False)
    ndata = pb.Payload(timestamp=1_764_000_000_002, seq=2)
    ndata.metrics.add(alias=1, double_value=7.5)
    twice = pb.Payload(timestamp=1_764_000_000_003, seq=3)
    twice.metrics.add(name="a", alias=5, datatype=10, double_value=1.0)
    twice.metrics.add(name="b", alias=5, datatype=10, double_value=2.0)
    unborn = pb.Payload(timestamp=1_764_000_000_004, seq=0)
    unborn.metrics.add(alias=1, double_value=0.0)
    with running_service(text, tmp_path, mosquitto.url) as service:
        out = Collector(mosquitto.port, [f"{group}/out/#"])
        dead = Collector(mosquitto.port, [f"{group}/arros/deadletter/#"])
        commands = Collector(mosquitto.port, [f"spBv1.0/{group}/NCMD/#"])
        publish_all(mosquitto.port, [
            (f"spBv1.0/{group}/NBIRTH/n1", nbirth.SerializeToString()),
            (f"spBv1.0/{group}/DBIRTH/n1/d1", dbirth.SerializeToString()),
            (f"spBv1.0/{group}/NDATA/n1", ndata.SerializeToString()),
            (f"spBv1.0/{group}/DBIRTH/n1/d2", twice.SerializeToString()),
        ])
        got = [orjson.loads(p) for _, p in out.wait_for(1)]
        letters = [orjson.loads(p) for _, p in dead.wait_for(1)]
        publish_all(mosquitto.port, [(f"spBv1.0/{group}/NDATA/u{i}", unborn.SerializeToString())
                                     for i in range(3000)])
        while service.pipeline.stats["plc"].messages < 3004:
            out.wait_for(len(out.messages) + 1, timeout=0.5)
        sent = len(commands.wait_for(REBIRTH_BURST, timeout=5))
        counters = _sparkplug_health(mosquitto.port, group, lambda c: c["rebirth_requests"] >= sent)
        for collector in (out, dead, commands):
            collector.close()
    assert [(r["metric"], r["value_double"]) for r in got] == [("speed", 7.5)]
    assert len(letters) == 1 and "alias 5 is given to both 'a' and 'b'" in letters[0]["error"]
    assert REBIRTH_BURST <= sent <= REBIRTH_BURST + 10 * REBIRTHS_PER_SECOND, sent
    # the decoder's counters in {prefix}/health: one refused birth, the rebirths asked (and those waiting
    # behind the rate limit), state for the born node and the never-born ones
    assert counters["refused_births"] == 1
    assert sent <= counters["rebirth_requests"] <= sent + 10 * REBIRTHS_PER_SECOND
    assert counters["rebirth_requests"] + counters["rebirths_waiting"] <= 3000
    assert counters["nodes"] >= 1 and counters["state_bytes"] > 0


def _sparkplug_health(port: int, group: str, ready, timeout: float = 10.0) -> dict:
    """The `plc` stream's Sparkplug counters from the first `{group}/arros/health` for which `ready` holds."""
    health = Collector(port, [f"{group}/arros/health"])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health.wait_for(len(health.messages) + 1, timeout=1.0)
            if health.messages:
                counters = orjson.loads(health.messages[-1][1])["sparkplug"]["plc"]
                if ready(counters):
                    return counters
        raise AssertionError(f"no health with the expected Sparkplug counters: {health.messages[-1:]}")
    finally:
        health.close()


def test_an_edge_node_lost_without_disconnect_is_dead_through_its_will(broker, tmp_path):
    """The NDEATH an edge node registers as its will, sent by the broker when the connection is lost: null
    rows for its metrics on Mosquitto and on the embedded broker (amqtt fires no plugin event for a will;
    Arros's broker class hands it to the engine)."""
    from tests.support import HOST, new_client

    group, host = unique("g"), unique("host")
    text = config(group, host).replace(SQL, "SELECT device_id, message_type, metric, is_null FROM plc")
    birth = pb.Payload(timestamp=1_764_000_000_000, seq=0)
    birth.metrics.add(name="bdSeq", datatype=4, long_value=3)
    birth.metrics.add(name="temp", alias=1, datatype=10, double_value=20.0)
    death = pb.Payload(timestamp=1_764_000_000_000)
    death.metrics.add(name="bdSeq", datatype=4, long_value=3)
    with broker.service(text, tmp_path):
        out = broker.collector([f"{group}/out/#"])
        node = new_client(broker.port, protocol=broker.protocol)
        node.will_set(f"spBv1.0/{group}/NDEATH/n1", death.SerializeToString(), qos=1)
        node.connect(HOST, broker.port)
        info = node.publish(f"spBv1.0/{group}/NBIRTH/n1", birth.SerializeToString(), qos=1)
        for _ in range(200):
            if info.is_published():
                break
            node.loop(0.05)
        assert info.is_published()
        out.wait_for(2)  # the birth is through before the connection goes
        node.socket().close()  # no DISCONNECT: the broker sends the will
        got = [orjson.loads(p) for _, p in out.wait_for(4)]
        out.close()
    assert sorted((r["message_type"], r["metric"], r["is_null"]) for r in got) == [
        ("NBIRTH", "bdSeq", False), ("NBIRTH", "temp", False), ("NDEATH", "bdSeq", True), ("NDEATH", "temp", True)]
