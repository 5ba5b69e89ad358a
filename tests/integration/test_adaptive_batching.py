"""Adaptive micro-batching end to end (a real Mosquitto, the service in-process, the log on): a batch
closes when the engine is free, not on a timer, and batches of array payloads are cut by bytes."""

from __future__ import annotations

import duckdb
import orjson
import pyarrow as pa

from tests.support import Collector, publish_all, running_service, unique


def config(prefix: str, engine: str) -> str:
    return f"""
[engine]
{engine}

[control]
prefix = "{prefix}/arros"

[streams.telemetry]
topic = "{prefix}/m/{{machine}}"
format = "json"
schema = {{ seq = "int64", temp = "float64" }}

[subscriptions.hot]
sql = "SELECT machine, seq, temp FROM telemetry WHERE temp > 50"
output = "{prefix}/hot/{{machine}}"
"""


def test_idle_engine_takes_each_message_without_waiting_for_the_delay(mosquitto, tmp_path):
    """With an hour's `batch_max_delay` and 10,000 messages per batch, only the engine being free can
    close these batches: each message's result arrives before the next message is sent."""
    prefix = unique("adaptive")
    text = config(prefix, 'batch_max_rows = 10000\nbatch_max_delay = "1h"')
    with running_service(text, tmp_path, mosquitto.url):
        collector = Collector(mosquitto.port, [f"{prefix}/hot/#"])
        try:
            for seq, qos in enumerate([1, 0, 1, 0]):  # QoS 0 takes the bulk read path, QoS 1 paho's
                publish_all(mosquitto.port, [(f"{prefix}/m/m{seq}", orjson.dumps({"seq": seq, "temp": 90.0}))],
                            qos=qos)
                received = collector.wait_for(seq + 1, timeout=20)
                assert [orjson.loads(p)["seq"] for _, p in received] == list(range(seq + 1))
        finally:
            collector.close()


def test_array_payloads_in_batches_cut_by_bytes(mosquitto, tmp_path):
    """Messages of 100 readings each, with batches limited to ~4 messages' bytes: every row is decoded
    and the filter's output equals DuckDB's over the input."""
    prefix = unique("bytes")
    readings = [{"seq": i, "temp": float((i * 37) % 100)} for i in range(3000)]
    messages = [(f"{prefix}/m/m{k % 3}", orjson.dumps(readings[k * 100:(k + 1) * 100])) for k in range(30)]
    size = len(messages[0][1])
    text = config(prefix, f'batch_max_bytes = {4 * size}\nbatch_max_delay = "1h"')
    inputs = pa.table({"seq": [r["seq"] for r in readings], "temp": [r["temp"] for r in readings],
                      "machine": [f"m{(r['seq'] // 100) % 3}" for r in readings]})
    expected = duckdb.connect().register("inputs", inputs).sql(
        "SELECT machine, seq FROM inputs WHERE temp > 50 ORDER BY seq").fetchall()
    batch_sizes: list[int] = []
    with running_service(text, tmp_path, mosquitto.url) as service:
        service.pipeline.add_batch_observer(lambda _stream, n, _seconds: batch_sizes.append(n))
        collector = Collector(mosquitto.port, [f"{prefix}/hot/#"])
        try:
            publish_all(mosquitto.port, messages, qos=1)
            received = collector.wait_for(len(expected), timeout=30)
        finally:
            collector.close()
        assert service.pipeline.stats["telemetry"].rows == len(readings)
        assert service.batcher.pending_bytes == 0
    assert sum(batch_sizes) == len(messages) and max(batch_sizes) <= 4
    rows = sorted(((topic.rsplit("/", 1)[1], orjson.loads(p)["seq"]) for topic, p in received), key=lambda r: r[1])
    assert rows == expected
