"""The one rule for the names of streams, tables, subscriptions and connectors, in the config file and in
control requests alike: a name is an SQL identifier (it is used unquoted in SQL, in topics and in file
names), so anything the config file accepts a control request can address, and the other way round."""

from __future__ import annotations

import re
from typing import Any

MAX_NAME_CHARS = 64
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_RULE = f"an SQL identifier of at most {MAX_NAME_CHARS} ASCII letters, digits and _ (not starting with a digit)"


def valid_name(name: Any) -> bool:
    """True for a name that follows the rule (`fullmatch`: no trailing newline slips through a `$`)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_CHARS and NAME.fullmatch(name) is not None
