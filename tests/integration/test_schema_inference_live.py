"""`arros check` (a subprocess) on a stream without a declared schema: its inferred columns and pending
subscriptions are listed."""

from __future__ import annotations

from tests.support import arros_command


def test_check_command_shows_inferred_streams_and_pending_subscriptions(tmp_path):
    path = tmp_path / "arros.toml"
    path.write_text('[streams.tg]\ntopic = "telegraf/{host}"\nformat = "influx"\nmeasurement = "cpu"\n'
                    '[subscriptions.busy]\nsql = "SELECT host, usage_user FROM tg WHERE usage_user > 90"\n'
                    'output = "alerts/{host}"\nformat = "arrow"\nbatch = true\n')
    result = arros_command("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "stream tg: telegraf/{host} [influx] (_measurement string, _time timestamp[ns, tz=UTC], " \
           "<columns inferred at run time from the first micro-batch>, host string" in result.stdout
    assert "subscription busy: pending -> alerts/{host}" in result.stdout
