"""Checkpoints of the engine: window and running-aggregate state, watermarks, and the log position
they cover, under `{state_dir}/checkpoints/`.

A checkpoint is a folder `{seq}` holding `manifest.json` and one Arrow IPC file per aggregate
subscription. It is written as `.tmp-{seq}` (every file fsynced), renamed to `pending-{seq}` and,
once every output of the records it covers is confirmed by the broker, renamed to `{seq}`: only
then does it become the one a restart resumes from (state at `seq`, then the log after it), and is
the older one deleted. Renames are atomic, so a crash leaves the previous checkpoint or the new one.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

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


class CheckpointStore:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.pending: Checkpoint | None = None
        self.latest: Checkpoint | None = None
        self.written = 0
        self.last_written = time.monotonic()

    def load(self) -> Checkpoint | None:
        """The newest promoted checkpoint; unfinished and pending ones are deleted."""
        if not self.dir.is_dir():
            return None
        for path in self.dir.iterdir():
            if path.name.startswith((".tmp-", "pending-")):
                shutil.rmtree(path, ignore_errors=True)
        done = sorted((p for p in self.dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        for path in reversed(done):
            try:
                manifest = orjson.loads((path / MANIFEST).read_bytes())
            except (OSError, ValueError) as exc:
                log.error("checkpoint %s is unreadable (%s); trying an older one", path, exc)
                continue
            self.latest = Checkpoint(manifest["seq"], manifest["archive_from"], manifest["confirmed"], path, manifest)
            return self.latest
        return None

    def restore(self, checkpoint: Checkpoint, engine: Engine, now: float,
                adopt: Callable[[str, pa.Schema], None] | None = None) -> list[str]:
        """Put the checkpoint's state into `engine`; returns the subscriptions restored. `adopt` first gets
        the schemas earlier runs inferred for schema-less streams (their subscriptions plan on them)."""
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
                with pa.memory_map(str(checkpoint.path / entry["file"])) as source:
                    table = pa.ipc.open_file(source).read_all()
                subscription.restore(table, entry["counters"])
            except (OSError, pa.ArrowInvalid, ValueError) as exc:
                log.warning("checkpoint: state of subscription %s not restored (%s); it starts empty", name, exc)
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
        previous, pending.path = self.latest, final
        self.latest, self.pending = pending, None
        self.written += 1
        if previous is not None and previous.path is not None and previous.path != final:
            shutil.rmtree(previous.path, ignore_errors=True)
        return pending


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
