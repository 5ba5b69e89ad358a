"""Session-wide real services: one Mosquitto on a free loopback port; tests use unique topics."""

from __future__ import annotations

import pytest

from tests.support import Mosquitto, start_mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Mosquitto:
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()
