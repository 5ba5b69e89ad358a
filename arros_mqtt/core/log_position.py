"""Where the engine is in the write-ahead log: shared by the stages that tag their output with it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LogPosition:
    seq: int = 0  # the log record being processed (0: none yet, or no log)
    time_ms: int = 0  # when that record was appended (epoch ms); 0: use the wall clock
