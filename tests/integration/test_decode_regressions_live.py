"""A fuzzing find that crashed the process: run in a Python subprocess of its own, where a crash shows."""

from __future__ import annotations

import subprocess
import sys


def test_json_batch_starting_with_null_is_a_dead_letter_not_a_segfault():
    """pyarrow 26's JSON reader dies with SIGSEGV on a first line `null`; run it where a crash shows."""
    code = ("from tests.unit.test_decode_regressions import decode\n"
            "table, bad = decode('json', [b'null', b'{\"rpm\": 1}', b'5', b'\"x\"', b'{\"rpm\": 2}'])\n"
            "print(table.column('rpm').to_pylist(), len(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "[1, 2] 3"
