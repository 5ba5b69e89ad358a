"""A graceful restart in-process: the final checkpoint carries running-aggregate state and the schema a
schema-less stream inferred, so counting goes on where it stopped."""

from __future__ import annotations

import orjson

from tests.support import Collector, publish_all, running_service, unique


def test_running_counts_and_inferred_schema_survive_a_restart(mosquitto, tmp_path):
    prefix = unique()
    config = f"""
[broker]
client_id = "{unique('arros-')}"
[engine]
state_dir = "{tmp_path / 'state'}"
[control]
prefix = "{prefix}/arros"
[streams.s]
topic = "{prefix}/in/{{machine}}"
[subscriptions.counts]
sql = "SELECT machine, count(*) AS n, sum(v) AS total FROM s GROUP BY machine"
output = "{prefix}/out/{{machine}}"
"""
    out = Collector(mosquitto.port, [f"{prefix}/out/#"])
    first = [(f"{prefix}/in/m{i % 2}", orjson.dumps({"v": i})) for i in range(100)]
    with running_service(config, tmp_path, mosquitto.url) as service:
        publish_all(mosquitto.port, first)
        out.wait_for(1)
        while service.pipeline.stats["s"].rows < 100:
            out.wait_for(len(out.messages) + 1, timeout=1)
    assert (tmp_path / "state" / "checkpoints").is_dir()
    with running_service(config, tmp_path, mosquitto.url) as service:
        assert service.engine.streams["s"].schema is not None  # adopted before any new message
        assert "counts" in service.engine.subscriptions and not service.engine.pending
        out.messages.clear()
        publish_all(mosquitto.port, [(f"{prefix}/in/m0", orjson.dumps({"v": 1000}))])
        got = out.wait_for(1)
    out.close()
    assert [orjson.loads(p) for _, p in got] == [{"machine": "m0", "n": 51, "total": sum(range(0, 100, 2)) + 1000}]


def test_a_garbage_checkpoint_state_file_rebuilds_the_state_from_the_log(mosquitto, tmp_path, caplog):
    """Issue 20 item 7: the running count goes on at 501, not 1 ("starts empty"), because the log still
    holds every record the state came from."""
    prefix = unique()
    config = f"""
[broker]
client_id = "{unique('arros-')}"
[engine]
state_dir = "{tmp_path / 'state'}"
[control]
prefix = "{prefix}/arros"
[streams.s]
topic = "{prefix}/in/{{machine}}"
schema = {{ v = "int64" }}
[subscriptions.counts]
sql = "SELECT machine, count(*) AS n FROM s GROUP BY machine"
output = "{prefix}/out/{{machine}}"
"""
    out = Collector(mosquitto.port, [f"{prefix}/out/#"])
    with running_service(config, tmp_path, mosquitto.url) as service:
        publish_all(mosquitto.port, [(f"{prefix}/in/m0", orjson.dumps({"v": i})) for i in range(500)])
        while service.pipeline.stats["s"].rows < 500:
            out.wait_for(len(out.messages) + 1, timeout=1)
    state_files = list((tmp_path / "state" / "checkpoints").glob("[0-9]*/*.arrow"))
    assert state_files, "no checkpoint was written at stop"
    for state_file in state_files:
        state_file.write_bytes(b"\x00garbage" * 64)
    with running_service(config, tmp_path, mosquitto.url):
        out.messages.clear()
        publish_all(mosquitto.port, [(f"{prefix}/in/m0", orjson.dumps({"v": 1}))])
        got = out.wait_for(1)
    out.close()
    assert [orjson.loads(p) for _, p in got] == [{"machine": "m0", "n": 501}]
    assert "starts empty" not in caplog.text.lower()
