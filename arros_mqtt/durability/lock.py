"""One Arros process per `state_dir`: its log, checkpoints and MQTT session belong to one instance."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from arros_mqtt.core.errors import ConfigError


class StateDirLock:
    """An exclusive `flock` on `{state_dir}/LOCK`, released at stop (or by the kernel when the process dies)."""

    def __init__(self, state_dir: str, source: str) -> None:
        self.path = Path(state_dir) / "LOCK"
        self.source = source
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(self.source, "engine.state_dir", f"cannot use {str(self.path.parent)!r}: "
                              f"{exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(self.source, "engine.state_dir", f"{str(self.path.parent)!r} is in use by another Arros "
                              f"process (pid {owner}); give each instance a state_dir of its own") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None
