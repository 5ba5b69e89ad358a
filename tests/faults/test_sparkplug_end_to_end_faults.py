"""Sparkplug B host state across a crash: `arros run` killed with SIGKILL, the broker publishes its will, and
the retained STATE says offline to a newcomer."""

from __future__ import annotations

import time

import orjson

from tests.integration.test_sparkplug_end_to_end import config
from tests.support import Collector, start_arros, stop_process, unique


def test_state_is_retained_online_and_the_will_says_offline(mosquitto, tmp_path):
    group, host = unique("g"), unique("host")
    path = tmp_path / "arros.toml"
    path.write_text(config(group, host).replace("[engine]\n", f"[engine]\nstate_dir = \"{tmp_path / 'state'}\"\n"))
    state = Collector(mosquitto.port, [f"spBv1.0/STATE/{host}"])
    process = start_arros("run", "-c", str(path), "--broker", mosquitto.url, log=tmp_path / "arros.log")
    try:
        online = orjson.loads(state.wait_for(1)[0][1])
        assert online["online"] is True and isinstance(online["timestamp"], int)
        time.sleep(0.3)
    finally:
        process.kill()  # no clean disconnect: the broker publishes the will
        process.wait(10)
    messages = state.wait_for(2)
    state.close()
    assert orjson.loads(messages[1][1]) == {"online": False, "timestamp": online["timestamp"]}
    late = Collector(mosquitto.port, [f"spBv1.0/STATE/{host}"])  # retained: a newcomer sees the last state
    retained = late.wait_for(1)
    late.close()
    assert orjson.loads(retained[0][1]) == {"online": False, "timestamp": online["timestamp"]}
    assert stop_process(process) is not None
