"""`arros run` as a user runs it: a real process, SIGTERM/SIGINT stop it cleanly after flushing."""

from __future__ import annotations

import signal
import socket

import orjson
import pytest

from tests.support import arros_command, start_arros, stop_process, unique, wait_for_log


def test_version_and_module_entry_point():
    result = arros_command("--version")
    assert result.returncode == 0 and result.stdout.startswith("arros ")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_until_signal_then_exit_cleanly(broker, tmp_path, sig):
    """Client mode (`--broker`) and embedded mode (no [broker] table: amqtt on [embedded] listen)."""
    prefix = unique()
    config = tmp_path / "arros.toml"
    where = (f'[embedded]\nlisten = "127.0.0.1:{broker.port}"' if broker.kind == "embedded"
             else f'[broker]\nclient_id = "{unique("arros-")}"')
    config.write_text(f"""
{where}
[engine]
batching = "delay"
batch_max_delay = "2s"
state_dir = "{tmp_path / 'state'}"
[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ v = "int64" }}
[subscriptions.copy]
sql = "SELECT device, v FROM s WHERE v % 2 = 0"
output = "{prefix}/out/{{device}}"
""")
    log = tmp_path / "arros.log"
    process = start_arros("run", "-c", str(config), *(["--broker", broker.url] if broker.url else []), log=log)
    try:
        wait_for_log(log, "subscribed to", "listening on", process=process, timeout=10)
        out = broker.collector([f"{prefix}/out/#"])
        broker.publish_all([(f"{prefix}/in/d1", orjson.dumps({"v": i})) for i in range(100)])
        __import__("time").sleep(0.3)
        # The 2 s batch delay has not passed: these rows are still buffered when the signal arrives.
        assert stop_process(process, sig) == 0
        got = sorted(orjson.loads(p)["v"] for _, p in out.wait_for(50, timeout=10))
        out.close()
    finally:
        if process.poll() is None:
            process.kill()
    assert got == list(range(0, 100, 2)), log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "100 messages, 100 rows, 0 dead letters" in text


def test_run_with_bad_config_is_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[streams.s]\ntopic = "a"\nformat = "yaml"\nschema = { v = "int64" }\n')
    result = arros_command("run", "-c", str(config), "--broker", "mqtt://127.0.0.1:1")
    assert result.returncode == 2 and "streams.s.format" in result.stderr and "Traceback" not in result.stderr


def test_embedded_port_taken_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = tmp_path / "arros.toml"
        config.write_text(f'[embedded]\nlisten = "127.0.0.1:{taken.getsockname()[1]}"\n')
        result = arros_command("run", "-c", str(config))
    assert result.returncode == 1, result.stderr
    assert "embedded broker cannot listen on 127.0.0.1:" in result.stderr and "Traceback" not in result.stderr


def test_bad_embedded_listen_is_a_config_error(tmp_path):
    config = tmp_path / "arros.toml"
    config.write_text('[embedded]\nlisten = "1883"\n')
    result = arros_command("run", "-c", str(config))
    assert result.returncode == 2 and "embedded.listen" in result.stderr and "host:port" in result.stderr
