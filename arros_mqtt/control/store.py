"""Run-time subscriptions on disk, so they survive a restart (docs/control.md).

One JSON file, `{state_dir}/subscriptions.json`, rewritten whole on every change: written to a
temporary file in the same directory, fsynced, then renamed over the old one (and the directory
fsynced), so a crash leaves either the old or the new file, never a torn one. Changes are rare
(control requests), so rewriting the whole file is cheaper than anything cleverer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from arros_mqtt.config import SubscriptionConfig

log = logging.getLogger(__name__)
FILE_NAME = "subscriptions.json"
VERSION = 1


@dataclass(frozen=True)
class StoredSubscription:
    name: str
    definition: dict[str, Any]  # the keys of a `[subscriptions.NAME]` table
    created_at: str  # RFC 3339 UTC
    paused: str | None = None  # the reason, when paused
    version: str | None = None  # "{created_at}/{member}" in the catalogue (versions.py); None: stored before


def definition_of(config: SubscriptionConfig) -> dict[str, Any]:
    """A subscription as the keys of its `[subscriptions.NAME]` table (what a create request carries)."""
    definition: dict[str, Any] = {"sql": config.sql}
    if config.output is not None:
        definition["output"] = config.output.text
    definition.update(format=config.format, retain=config.retain, batch=config.batch,
                      timestamps=config.timestamps, archive=config.archive)
    if config.qos is not None:  # not given: the default follows the subscription's kind
        definition["qos"] = config.qos
    if config.late_output is not None:
        definition["late_output"] = config.late_output.text
    return definition


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SubscriptionStore:
    """The stored run-time subscriptions, by name; every change is on disk before it returns."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.entries: dict[str, StoredSubscription] = {}
        # config-file subscriptions paused (by request, a limit or a run bound): name -> (its SQL, reason); a
        # restart keeps the pause while the config file still has the same SQL under that name
        self.config_paused: dict[str, tuple[str, str]] = {}

    def load(self) -> dict[str, StoredSubscription]:
        """Read the file; a missing file is an empty store, an unreadable one is logged and kept aside."""
        try:
            data = orjson.loads(self.path.read_bytes())
            entries = {item["name"]: StoredSubscription(item["name"], dict(item["definition"]), item["created_at"],
                                                        item.get("paused"), item.get("version"))
                       for item in data["subscriptions"]}
            config_paused = {item["name"]: (str(item["sql"]), str(item["paused"]))
                             for item in data.get("config_paused", [])}
        except FileNotFoundError:
            entries, config_paused = {}, {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(f"{FILE_NAME}.unreadable-{int(dt.datetime.now().timestamp())}")
            log.error("cannot read %s (%s); moved it to %s and starting without run-time subscriptions",
                      self.path, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            entries, config_paused = {}, {}
        self.entries = entries
        self.config_paused = config_paused
        return dict(entries)

    def put(self, entry: StoredSubscription) -> None:
        self._save({**self.entries, entry.name: entry})

    def remove(self, name: str) -> None:
        self._save({k: v for k, v in self.entries.items() if k != name})

    def pause_config(self, name: str, sql: str, reason: str | None) -> None:
        """Store (reason) or clear (None) the pause of a config-file subscription."""
        paused = {k: v for k, v in self.config_paused.items() if k != name}
        if reason is not None:
            paused[name] = (sql, reason)
        self._save(self.entries, paused)

    def _save(self, entries: dict[str, StoredSubscription],
              config_paused: dict[str, tuple[str, str]] | None = None) -> None:
        """Write atomically, then adopt `entries` (and `config_paused`, default: the current ones); OSError
        leaves memory and disk as they were."""
        if config_paused is None:
            config_paused = self.config_paused
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = orjson.dumps({
            "version": VERSION,
            "subscriptions": [{"name": e.name, "definition": e.definition, "created_at": e.created_at,
                               "paused": e.paused, "version": e.version} for e in entries.values()],
            "config_paused": [{"name": name, "sql": sql, "paused": reason}
                              for name, (sql, reason) in config_paused.items()],
        }, option=orjson.OPT_INDENT_2)
        fd, temp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.entries = entries
        self.config_paused = dict(config_paused)
