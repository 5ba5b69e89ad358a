"""A group's run-time catalogue across a member's absence, on a real Mosquitto with two `arros run`
processes: while one member is killed (-9), a subscription is dropped and another replaced over the
control topic and rows are published (its persistent session queues a share of them); when it comes
back it runs the new definition, also on the queued rows, the dropped one is gone (from its engine and its
store), its old entries are not republished over the newer ones, and the results of the replaced
subscription equal DuckDB's, each exactly once. And a returning member publishes its own entry over an
older retained one, and the entries the broker no longer retains."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

from arros_mqtt.config import BrokerConfig
from arros_mqtt.control.client import ControlClient
from arros_mqtt.control.versions import TOMBSTONE_SECONDS
from tests.integration.test_cluster import (
    FILTER_SQL,
    MACHINES,
    Collector,
    duckdb_rows,
    make_rows,
    member_config,
    online_members,
    publish_rows,
    results,
    wait_until,
)
from tests.support import running_service, start_arros, stop_process, unique, wait_for_log

OLD_SQL = "SELECT machine, seq FROM t WHERE seq % 2 = 0"
NEW_SQL = "SELECT machine, seq, temp FROM t WHERE seq % 3 = 0"
GONE_SQL = "SELECT machine, seq FROM t WHERE seq % 7 = 0"


def retained_catalogue(port: int, prefix: str, names: list[str], timeout: float = 10.0) -> dict[str, tuple]:
    """The retained `{prefix}/catalog/{name}` entries, each with its Message Expiry Interval (None: none)."""
    found: dict[str, tuple] = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("cat-"), protocol=mqtt.MQTTv5)

    def on_message(_client, _userdata, message) -> None:
        if message.retain and message.payload:
            expiry = getattr(message.properties, "MessageExpiryInterval", None)
            found[message.topic.rsplit("/", 1)[-1]] = (orjson.loads(message.payload), expiry)
            if set(names) <= set(found):
                done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/catalog/+", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return found


def replies_by_member(client: ControlClient, body: dict) -> dict[str, dict]:
    replies = client.request_all(body)
    assert replies.missing == [], replies
    return {r["member"]: r for r in replies.replies}


def test_a_member_that_was_down_takes_the_drops_and_replaces_it_missed(mosquitto, tmp_path):
    base, group = unique(), unique("g")
    prefix = f"{base}/arros"
    tables = tmp_path / "machines.csv"
    tables.write_text(MACHINES)
    configs = []
    for i in range(2):
        path = tmp_path / f"m{i}.toml"
        path.write_text(member_config(base, mosquitto.url, group, i, tmp_path / f"state-{i}", tables))
        configs.append(path)
    logs = [tmp_path / "m0.log", tmp_path / "m1.log", tmp_path / "m1-again.log"]
    presence = Collector(mosquitto.port, [f"{prefix}/members/+"])
    client = ControlClient(BrokerConfig(url=mosquitto.url), prefix, timeout=10)
    with contextlib.ExitStack() as stack:
        first = start_arros("run", "-c", str(configs[0]), log=logs[0])
        stack.callback(stop_process, first, signal.SIGTERM, 30)
        second = start_arros("run", "-c", str(configs[1]), log=logs[1])
        stack.callback(stop_process, second, signal.SIGKILL, 30)
        for process, log in ((first, logs[0]), (second, logs[1])):
            wait_for_log(log, "arros running", process=process)
        wait_until(lambda: online_members(presence) == {"m0", "m1"})

        for name, sql in (("changed", OLD_SQL), ("gone", GONE_SQL)):
            created = replies_by_member(client, {"op": "create", "name": name, "sql": sql,
                                                 "output": f"{base}/{name}/{{machine}}"})
            assert sorted(created) == ["m0", "m1"] and all(r["ok"] for r in created.values()), created

        stop_process(second, signal.SIGKILL)  # down: it misses what follows
        wait_until(lambda: online_members(presence) == {"m0"})
        replaced = replies_by_member(client, {"op": "replace", "name": "changed", "sql": NEW_SQL,
                                              "output": f"{base}/changed/{{machine}}"})
        dropped = replies_by_member(client, {"op": "drop", "name": "gone"})
        assert list(replaced) == ["m0"] and replaced["m0"]["ok"], replaced
        assert list(dropped) == ["m0"] and dropped["m0"]["ok"], dropped
        new_version = replaced["m0"]["result"]["version"]
        assert new_version.endswith("/m0")
        changed = Collector(mosquitto.port, [f"{base}/changed/#"])
        gone = Collector(mosquitto.port, [f"{base}/gone/#"])
        hot = Collector(mosquitto.port, [f"{base}/hot/#"])
        rows = make_rows(300, seed=17)  # while m1 is down: its persistent session may queue a share of them
        publish_rows(mosquitto.port, base, rows)

        again = start_arros("run", "-c", str(configs[1]), log=logs[2])  # back, with its old store
        stack.callback(stop_process, again, signal.SIGTERM, 30)
        wait_for_log(logs[2], "arros running", process=again)
        wait_until(lambda: online_members(presence) == {"m0", "m1"})
        wait_for_log(logs[2], "dropped: the group dropped it while this member was away", process=again)
        wait_for_log(logs[2], "replaced by the group's newer definition", process=again)

        described = replies_by_member(client, {"op": "describe", "name": "changed"})
        assert {m: r["result"]["sql"] for m, r in described.items()} == {"m0": NEW_SQL, "m1": NEW_SQL}
        assert {r["result"]["version"] for r in described.values()} == {new_version}
        listed = replies_by_member(client, {"op": "list"})
        for member, reply in listed.items():
            names = {row["name"] for row in reply["result"]["subscriptions"]}
            assert names == {"hot", "joined", "changed"}, (member, names)  # config-file ones untouched
        stored = orjson.loads((tmp_path / "state-1" / "subscriptions.json").read_bytes())
        assert {e["name"]: e["definition"]["sql"] for e in stored["subscriptions"]} == {"changed": NEW_SQL}

        later = [{**row, "seq": row["seq"] + 300} for row in make_rows(600, seed=18)]
        publish_rows(mosquitto.port, base, later)
        rows += later
        expected, expected_hot = duckdb_rows(rows, NEW_SQL, tables), duckdb_rows(rows, FILTER_SQL, tables)
        got, got_hot = results(changed, len(expected)), results(hot, len(expected_hot))
        time.sleep(0.5)  # a straggler (a duplicate, or a row of the dropped one) would arrive by now
        got_after, gone_messages = results(changed, len(expected)), list(gone.messages)
        for collector in (changed, gone, hot):
            collector.close()

        catalogue = retained_catalogue(mosquitto.port, prefix, ["changed", "gone", "hot", "joined"])
    presence.close()
    assert got == got_after == expected  # the new definition, on both members, each row once
    assert got_hot == expected_hot
    assert gone_messages == []
    entry, _ = catalogue["changed"]
    assert entry["sql"] == NEW_SQL and entry["version"] == new_version  # m1's old entry not republished over it
    tombstone, expiry = catalogue["gone"]
    assert tombstone["dropped"] is True and tombstone["version"].endswith("/m0") and "sql" not in tombstone
    assert expiry is not None and TOMBSTONE_SECONDS - 120 < expiry <= TOMBSTONE_SECONDS
    assert catalogue["hot"][0]["origin"] == "config" and "version" not in catalogue["hot"][0]
    text = Path(logs[2]).read_text()  # it read the catalogue before it took its queued share of the stream
    assert text.index("dropped: the group dropped it") < text.index(f"as {base}-m1 (session present: True)")


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("ret-"), protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_returning_member_republishes_its_newer_entries_and_the_ones_the_broker_lost(mosquitto, tmp_path):
    base, group = unique(), unique("g")
    prefix = f"{base}/arros"
    tables = tmp_path / "machines.csv"
    tables.write_text(MACHINES)

    def member(i: int):
        return running_service(member_config(base, mosquitto.url, group, i, tmp_path / f"state-{i}", tables),
                               tmp_path, None)

    client = ControlClient(BrokerConfig(url=mosquitto.url), prefix, timeout=10)
    with member(0), member(1):
        for name in ("ours", "lost"):
            created = replies_by_member(client, {"op": "create", "name": name, "sql": OLD_SQL,
                                                 "output": f"{base}/{name}/{{machine}}"})
            assert all(r["ok"] for r in created.values()), created
    versions = retained_catalogue(mosquitto.port, prefix, ["ours", "lost"])
    # meanwhile: an older definition of "ours" is retained over the newest, and "lost" is no longer retained
    older = {**versions["ours"][0], "sql": GONE_SQL, "version": "2000-01-01T00:00:00.000Z/zz"}
    publish_retained(mosquitto.port, f"{prefix}/catalog/ours", orjson.dumps(older))
    publish_retained(mosquitto.port, f"{prefix}/catalog/lost", b"")
    with member(1) as back:
        wait_until(lambda: {"ours", "lost"} <= set(retained_catalogue(mosquitto.port, prefix, ["ours", "lost"],
                                                                      timeout=1)), timeout=15)
        wait_until(lambda: retained_catalogue(mosquitto.port, prefix, ["ours"])["ours"][0]["sql"] == OLD_SQL,
                   timeout=15)
        running = {name: back.engine.subscriptions[name].config.sql for name in ("ours", "lost")}
        catalogue = retained_catalogue(mosquitto.port, prefix, ["ours", "lost"])
    assert running == {"ours": OLD_SQL, "lost": OLD_SQL}  # the older retained definition did not replace it
    assert catalogue["ours"][0]["version"] == back.control.store.entries["ours"].version
    assert catalogue["lost"][0]["sql"] == OLD_SQL and catalogue["lost"][0]["version"].endswith(("/m0", "/m1"))
