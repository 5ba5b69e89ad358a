"""The shipped examples validate and the demo really derives results."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, arros_command


def test_factory_example_config_checks():
    result = arros_command("check", "-c", "examples/factory/arros.toml")
    assert result.returncode == 0, result.stderr
    assert "subscription hot_machines: per_row on telemetry" in result.stdout


def test_demo_runs_and_prints_alerts_and_faults():
    result = subprocess.run([sys.executable, "examples/factory/run_demo.py", "--seconds", "4", "--rate", "20"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    alerts = [line for line in result.stdout.splitlines() if line.startswith("alerts/")]
    assert alerts, result.stdout + result.stderr
    for line in alerts:  # the join with machines.csv: every alert is above its machine's max_temp
        fields = dict(part.split("=", 1) for part in line.split("  ")[1:] if "=" in part)
        limit = {"m1": 85, "m2": 85, "m3": 80, "m4": 80, "m5": 90, "m6": 90}[fields["machine"]]
        assert float(fields["temp"]) > limit
    assert "Traceback" not in result.stderr
