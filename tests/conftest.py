"""Session-wide real services: one Mosquitto on a free loopback port; tests use unique topics.

`broker` runs a test twice: client mode on that Mosquitto, and the embedded broker on a free port.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from tests.support import BrokerUnderTest, Mosquitto, free_port, start_mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Mosquitto:
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request: pytest.FixtureRequest) -> BrokerUnderTest:
    if request.param == "embedded":
        return BrokerUnderTest("embedded", free_port(), mqtt.MQTTv311)
    mosquitto = request.getfixturevalue("mosquitto")
    return BrokerUnderTest("mosquitto", mosquitto.port, mqtt.MQTTv5, mosquitto.url)
