"""`arros check` as a subprocess: one line and a non-zero exit for a bad config or bad SQL, a good config described."""

from __future__ import annotations

from tests.support import arros_command
from tests.unit.test_config import GOOD, write


def test_check_command_reports_one_line_and_nonzero_exit(tmp_path):
    path = write(tmp_path, '[engine]\nbatch_max_delay = "soon"\n')
    result = arros_command("check", "-c", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "engine.batch_max_delay" in lines[0]


def test_check_command_validates_sql(tmp_path):
    text = GOOD.replace("WHERE temp > 90", "WHERE tmp > 90")
    result = arros_command("check", "-c", str(write(tmp_path, text)))
    assert result.returncode == 2 and "subscriptions.hot.sql" in result.stderr and "tmp" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_command_ok(tmp_path):
    result = arros_command("check", "-c", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    assert "subscription hot: per_row on telemetry -> alerts/{line}/{machine}" in result.stdout


def test_check_missing_file():
    result = arros_command("check", "-c", "/nonexistent/arros.toml")
    assert result.returncode == 2 and "file not found" in result.stderr
