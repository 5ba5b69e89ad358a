"""Checkpoints of the engine: window and running-aggregate state, watermarks, and the log position
they cover, under `{state_dir}/checkpoints/`.

A checkpoint is a folder `{seq}` holding `manifest.json` and one Arrow IPC file per aggregate
subscription. It is written as `.tmp-{seq}` (every file fsynced), renamed to `pending-{seq}` and,
once every output of the records it covers is confirmed by the broker, renamed to `{seq}`: only
then does it become the one a restart resumes from (state at `seq`, then the log after it). Renames
are atomic, so a crash leaves the previous checkpoint or the new one.

The previous promoted checkpoint is kept too (the one before it is deleted), and the log keeps the
records after it: a restart whose newest checkpoint cannot be read (a garbage manifest or state file)
falls back to the previous one and replays the log from there, or, with no usable checkpoint, replays
the log from its start. State starts empty only when the log no longer holds what it would need, and
that is an ERROR, never a silent reset.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from arros_mqtt.core.errors import ArrosError
from arros_mqtt.engine import Engine

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@dataclass
class Checkpoint:
    seq: int  # the last log record whose effects the state includes
    archive_from: int  # the first log record whose stream rows may not all be in closed archive files
    confirmed: int  # outputs of records up to this one were confirmed when it was written
    path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


class CheckpointDamaged(ArrosError):
    """A checkpoint's manifest or a state file cannot be read: a restart falls back (module docstring)."""


class CheckpointStore:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.pending: Checkpoint | None = None
        self.latest: Checkpoint | None = None
        self.previous: Checkpoint | None = None  # kept (with the log after it) in case `latest` is unreadable
        self.unreadable: list[Path] = []  # promoted checkpoints whose manifest did not read
        self.written = 0
        self.last_written = time.monotonic()

    def load(self) -> Checkpoint | None:
        """The newest promoted checkpoint whose manifest reads; unfinished and pending ones are deleted."""
        return next(self.promoted(), None)

    def promoted(self) -> Iterator[Checkpoint]:
        """Promoted checkpoints with a readable manifest, newest first (sets `latest` and `previous`)."""
        self.unreadable = []
        if not self.dir.is_dir():
            return
        for path in self.dir.iterdir():
            if path.name.startswith((".tmp-", "pending-")):
                shutil.rmtree(path, ignore_errors=True)
        done = sorted((p for p in self.dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        found: list[Checkpoint] = []
        for path in reversed(done):
            try:
                manifest = orjson.loads((path / MANIFEST).read_bytes())
                checkpoint = Checkpoint(manifest["seq"], manifest["archive_from"], manifest["confirmed"], path,
                                        manifest)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("checkpoint %s is unreadable (%s); trying an older one", path, exc)
                self.unreadable.append(path)
                continue
            found.append(checkpoint)
            self.latest, self.previous = found[0], found[1] if len(found) > 1 else None
            yield checkpoint

    def restore_newest(self, engine: Engine, now: float, replayable: Callable[[int], bool],
                       adopt: Callable[[str, pa.Schema], None] | None = None) -> tuple[Checkpoint | None, list[str]]:
        """Restore the newest checkpoint that reads whole and after which the log is complete
        (`replayable(seq)`): (it, the subscriptions restored), or (None, []) to replay the log from its
        start. ERROR when neither is possible and state starts empty (module docstring)."""
        candidates = list(self.promoted())
        damaged: list[Path] = list(self.unreadable)
        for index, checkpoint in enumerate(candidates):
            assert checkpoint.path is not None
            if not replayable(checkpoint.seq):
                log.error("checkpoint %d cannot be used: the log no longer holds the records after it", checkpoint.seq)
                damaged.append(checkpoint.path)
                continue
            try:
                tables = self.read_state(checkpoint)
            except CheckpointDamaged as exc:
                log.error("checkpoint %d is damaged (%s); falling back to an older one or the log", checkpoint.seq,
                          exc)
                damaged.append(checkpoint.path)
                continue
            names = ", ".join(path.name for path in damaged)
            self._set_aside(damaged)
            if damaged:
                log.warning("restarting from checkpoint %d instead of %s: the log after it is replayed",
                            checkpoint.seq, names)
            self.latest, self.previous = checkpoint, candidates[index + 1] if index + 1 < len(candidates) else None
            return checkpoint, self._apply(checkpoint, tables, engine, now, adopt)
        names = ", ".join(path.name for path in damaged)
        self._set_aside(damaged)
        self.latest = self.previous = None
        if damaged and not replayable(0):
            log.error("no usable checkpoint (%s damaged) and the log no longer starts at record 1: the state of "
                      "windows and running aggregates STARTS EMPTY; the raw archive still holds the rows", names)
        elif damaged:
            log.warning("no usable checkpoint (%s damaged): replaying the whole log to rebuild the state", names)
        return None, []

    def _set_aside(self, paths: list[Path]) -> None:
        """Unusable checkpoints become `damaged-{seq}` folders: kept for inspection, never loaded again."""
        for path in paths:
            target = self.dir / f"damaged-{path.name}"
            shutil.rmtree(target, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.replace(path, target)

    def restore(self, checkpoint: Checkpoint, engine: Engine, now: float,
                adopt: Callable[[str, pa.Schema], None] | None = None) -> list[str]:
        """Put the checkpoint's state into `engine`; returns the subscriptions restored (CheckpointDamaged,
        with nothing changed, if a state file cannot be read). `adopt` first gets the schemas earlier runs
        inferred for schema-less streams (their subscriptions plan on them)."""
        return self._apply(checkpoint, self.read_state(checkpoint), engine, now, adopt)

    def read_state(self, checkpoint: Checkpoint) -> dict[str, pa.Table]:
        """Every state table of the checkpoint, all read before any is used (a subscription of a schema-less
        stream exists only once its schema is adopted, so which are still wanted is known only then)."""
        tables = {}
        for name, entry in checkpoint.manifest.get("subscriptions", {}).items():
            try:
                with pa.memory_map(str(checkpoint.path / entry["file"])) as source:
                    tables[name] = pa.ipc.open_file(source).read_all()
            except (OSError, pa.ArrowInvalid, ValueError, KeyError, TypeError) as exc:
                raise CheckpointDamaged(f"state of subscription {name}: {exc}") from None
        return tables

    def _apply(self, checkpoint: Checkpoint, tables: dict[str, pa.Table], engine: Engine, now: float,
               adopt: Callable[[str, pa.Schema], None] | None) -> list[str]:
        for name, encoded in checkpoint.manifest.get("schemas", {}).items():
            if adopt is not None and name in engine.streams:
                adopt(name, pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded))))
        for name, snapshot in checkpoint.manifest.get("watermarks", {}).items():
            if name in engine.watermarks:
                engine.watermarks[name].restore(snapshot, now)
        restored = []
        for name, entry in checkpoint.manifest.get("subscriptions", {}).items():
            subscription = engine.subscriptions.get(name)
            if subscription is None or not subscription.keeps_state or subscription.config.sql != entry["sql"]:
                log.warning("checkpoint: subscription %s is gone or its SQL changed; its state starts empty", name)
                continue
            try:
                subscription.restore(tables[name], entry["counters"])
            except (pa.ArrowInvalid, ValueError, KeyError) as exc:
                log.error("checkpoint: state of subscription %s does not fit it (%s); it starts empty", name, exc)
                continue
            restored.append(name)
        return restored

    def write(self, engine: Engine, seq: int, archive_from: int, confirmed: int,
              inferred: dict[str, bool] | None = None) -> Checkpoint:
        """Write the engine's state at `seq` as the pending checkpoint (OSError if the disk refuses).
        `inferred` names the streams whose schema was inferred (kept, so a restart decodes the same way)."""
        inferred = inferred or {}
        self.dir.mkdir(parents=True, exist_ok=True)
        temp = self.dir / f".tmp-{seq}"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        subscriptions = {}
        try:
            for index, (name, subscription) in enumerate(engine.subscriptions.items()):
                snapshot = subscription.snapshot()
                if snapshot is None:
                    continue
                table, counters = snapshot
                file_name = f"{index:04d}.arrow"
                with pa.OSFile(str(temp / file_name), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
                _fsync(temp / file_name)
                subscriptions[name] = {"sql": subscription.config.sql, "file": file_name, "counters": counters}
            manifest = {"seq": seq, "archive_from": archive_from, "confirmed": confirmed,
                        "written_at": time.time(), "subscriptions": subscriptions,
                        "watermarks": {name: w.snapshot() for name, w in engine.watermarks.items()},
                        "schemas": {name: base64.b64encode(stream.schema.serialize().to_pybytes()).decode()
                                    for name, stream in engine.streams.items()
                                    if inferred.get(name) and stream.schema is not None}}
            (temp / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            _fsync(temp / MANIFEST)
            _fsync(temp)
            pending = self.dir / f"pending-{seq}"
            if self.pending is not None and self.pending.path is not None:
                shutil.rmtree(self.pending.path, ignore_errors=True)
            os.replace(temp, pending)
            _fsync(self.dir)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self.pending = Checkpoint(seq, archive_from, confirmed, pending, manifest)
        self.last_written = time.monotonic()
        return self.pending

    def promote(self) -> Checkpoint:
        """The pending checkpoint becomes the one to restart from; the previous one is deleted."""
        pending = self.pending
        assert pending is not None and pending.path is not None
        final = self.dir / str(pending.seq)
        os.replace(pending.path, final)
        _fsync(self.dir)
        older, pending.path = self.previous, final
        if self.latest is not None and self.latest.path != final:
            self.previous = self.latest
        self.latest, self.pending = pending, None
        self.written += 1
        kept = {final, self.previous.path if self.previous is not None else None}
        if older is not None and older.path is not None and older.path not in kept:
            shutil.rmtree(older.path, ignore_errors=True)
        return pending

    def oldest_kept_seq(self) -> int:
        """The seq the oldest kept checkpoint covers (0 without a previous one): the log must hold what follows."""
        return self.previous.seq if self.previous is not None else 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
