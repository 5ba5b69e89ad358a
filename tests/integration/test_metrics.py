"""Prometheus metrics scraped over HTTP from a running service; the numbers match what was sent."""

from __future__ import annotations

import urllib.request

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.control_support import Operator, control_config
from tests.support import Collector, free_port, publish_all, running_service, unique


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_what_flowed(mosquitto, tmp_path):
    prefix = unique()
    port = free_port()
    text = control_config(prefix, tmp_path / "state") + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    good = [orjson.dumps({"temp": float(i)}) for i in range(200)]
    with running_service(text, tmp_path, mosquitto.url) as service:
        op = Operator(mosquitto.port, f"{prefix}/arros")
        sql = "SELECT machine, temp FROM telemetry WHERE temp >= 150"
        assert op.request({"op": "create", "name": "hot", "sql": sql, "output": f"{prefix}/hot"})["ok"]
        assert not op.request({"op": "drop", "name": "nope"})["ok"]
        base = Collector(mosquitto.port, [f"{prefix}/base/#"])
        hot = Collector(mosquitto.port, [f"{prefix}/hot"])
        publish_all(mosquitto.port, [(f"{prefix}/factory/l1/m1/telemetry", p) for p in [*good, b"{bad"]])
        base.wait_for(200)
        hot.wait_for(50)
        metrics = scrape(service.metrics.port)
        base.close()
        hot.close()
        op.close()
    stream = (("stream", "telemetry"),)
    assert metrics[("arros_stream_messages_total", stream)] == 201
    assert metrics[("arros_stream_rows_total", stream)] == 200
    assert metrics[("arros_deadletters_total", stream)] == 1
    assert metrics[("arros_subscription_rows_out_total", (("subscription", "base"),))] == 200
    assert metrics[("arros_subscription_rows_out_total", (("subscription", "hot"),))] == 50
    assert metrics[("arros_subscription_messages_out_total", (("subscription", "hot"),))] == 50
    assert metrics[("arros_subscription_late_rows_total", (("subscription", "hot"),))] == 0
    assert metrics[("arros_subscription_state_bytes", (("subscription", "hot"),))] == 0
    assert metrics[("arros_subscriptions", ())] == 2
    assert metrics[("arros_batch_seconds_count", stream)] >= 1
    assert metrics[("arros_control_requests_total", (("op", "create"), ("outcome", "ok")))] == 1
    assert metrics[("arros_control_requests_total", (("op", "drop"), ("outcome", "not_found")))] == 1
