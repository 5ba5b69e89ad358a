"""Over a real Mosquitto with `max_packet_size`: a result too big for the broker is a dead letter (its head
and size), the good results around it arrive, and the connection stays up for what comes after (a PUBLISH
over the broker's Maximum Packet Size would make Mosquitto drop the client, and with it every result)."""

from __future__ import annotations

import base64

import orjson

from arros_mqtt.testing import start_mosquitto
from tests.control_support import control_config
from tests.support import Collector, publish_all, running_service, unique, wait_subscribed

LIMIT = 65_536
SQL = "SELECT machine, rpm, repeat('x', CAST(rpm AS INT)) AS pad FROM telemetry"


def test_a_result_over_the_brokers_maximum_packet_size_is_a_dead_letter(tmp_path):
    (tmp_path / "mosquitto").mkdir()
    broker = start_mosquitto(tmp_path / "mosquitto", extra=f"max_packet_size {LIMIT}\n")
    try:
        prefix = unique()
        config = control_config(prefix, tmp_path / "state", base_sql=SQL)
        with running_service(config, tmp_path, broker.url) as service:
            wait_subscribed(service)
            results = Collector(broker.port, [f"{prefix}/base/#"])
            letters = Collector(broker.port, [f"{prefix}/arros/deadletter/#"])
            sizes = [10, 20, 200_000, 30, 40]  # the third result is ~200 kB: over the 64 KiB limit
            publish_all(broker.port, [(f"{prefix}/factory/l1/m{i}/telemetry", orjson.dumps({"rpm": n}))
                                      for i, n in enumerate(sizes)])
            got = results.wait_for(4)
            assert sorted(orjson.loads(p)["rpm"] for _, p in got) == [10, 20, 30, 40]
            (_, letter), = letters.wait_for(1)
            letter = orjson.loads(letter)
            assert letter["subscription"] == "base" and letter["bytes"] > 200_000 and letter["truncated"]
            assert "maximum packet size (65536 bytes)" in letter["error"]
            assert base64.b64decode(letter["payload_b64"]).startswith(b'{"machine":"m2"')
            assert service.engine.subscriptions["base"].stats.messages_too_large == 1
            # the connection held: later results still arrive
            publish_all(broker.port, [(f"{prefix}/factory/l1/m9/telemetry", orjson.dumps({"rpm": 50}))])
            assert orjson.loads(results.wait_for(5)[-1][1])["rpm"] == 50
            assert service.transport.packet_limit == LIMIT  # announced by Mosquitto in its CONNACK
            results.close()
            letters.close()
    finally:
        broker.stop()
