"""How every benchmark script ends: progress on stderr while it runs, then its table, then `--json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


def progress(text: str) -> None:
    """Progress lines go to stderr, so stdout holds just the table."""
    print(f"  {text}", file=sys.stderr)


def finish(result: dict, print_table: Callable[[dict], None], json_path: Path | None, ok: bool = True) -> int:
    """Print the table, write the JSON file if asked; the exit status says whether every run was `ok`."""
    print_table(result)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    return 0 if ok else 1
