"""Which results are published at QoS 2: windowed subscriptions by default when the log and the output journal
make it exactly once (client mode), QoS 1 otherwise; chosen per subscription."""

from __future__ import annotations

import pytest


def test_windowed_subscriptions_default_to_qos_2_with_the_log_in_client_mode(tmp_path):
    import pyarrow as pa

    from arros_mqtt.config import ConfigError, parse_config
    from arros_mqtt.service.pipeline import Pipeline
    from arros_mqtt.service.runtime import build_engine

    def config(durability: dict, broker: bool = True, qos: dict | None = None):
        subscriptions = {
            "w": {"sql": "SELECT tumble(ts, INTERVAL '1 second') AS window, count(*) AS n FROM t GROUP BY window",
                  "output": "o/w"},
            "r": {"sql": "SELECT v FROM t", "output": "o/r"},
            "r2": {"sql": "SELECT v FROM t", "output": "o/r2", "qos": 2}}
        for name, value in (qos or {}).items():
            subscriptions[name]["qos"] = value
        data = {"engine": {"state_dir": str(tmp_path)}, "durability": durability,
                "streams": {"t": {"topic": "t", "schema": {"ts": "timestamp[ms]", "v": "int64"}, "event_time": "ts"}},
                "subscriptions": subscriptions}
        if broker:
            data["broker"] = {"url": "mqtt://127.0.0.1:1883"}
        return parse_config(data, "<test>")

    def published_qos(cfg) -> dict[str, int]:
        engine = build_engine(cfg)
        got: dict[str, int] = {}
        pipeline = Pipeline(cfg, engine, lambda topic, _payload, qos, _retain: got.setdefault(topic, qos))
        schema = engine.streams["t"].full_schema()
        rows = {"ts": [1_000, 1_500], "v": [1, 2], "_topic": ["t", "t"], "_received_at": [1_000, 1_500]}
        pipeline.process_table("t", pa.table(rows).cast(schema))
        pipeline.emit(engine.advance("t", 10_000))
        return got

    assert published_qos(config({})) == {"o/w": 2, "o/r": 1, "o/r2": 2}
    assert published_qos(config({"wal": False}))["o/w"] == 1  # no log: no output journal
    assert published_qos(config({}, broker=False))["o/w"] == 1  # embedded: the broker dies with the process
    assert published_qos(config({}, qos={"w": 1}))["o/w"] == 1
    with pytest.raises(ConfigError, match="must be 0, 1 or 2") as refused:
        config({}, qos={"w": 3})
    assert refused.value.key == "subscriptions.w.qos"
