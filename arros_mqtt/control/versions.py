"""Which definition of a group's run-time subscription is the newest: versions and tombstones.

A member that was down misses the drops and replaces made meanwhile. So each run-time catalogue entry
carries a `version`, `"{created_at}/{member}"` (the member that took the create or replace request, or
whose catalogue entry this member adopted), and a drop in a group leaves a retained tombstone
`{"name", "origin": "control", "dropped": true, "version"}` instead of clearing the entry. On (re)join a
member compares its own stored version with the retained one and the newer wins (docs/cluster.md).

`created_at` is RFC 3339 UTC with milliseconds, always the same width, so comparing the version strings
compares the times first and the member names break a tie.
"""

from __future__ import annotations

from typing import Any

from arros_mqtt.control.store import StoredSubscription, now_rfc3339

# How long a retained tombstone stays (MQTT 5 Message Expiry Interval): a member down longer than this
# comes back running the dropped subscription (docs/cluster.md). MQTT 3.1.1: until replaced or cleared.
TOMBSTONE_SECONDS = 7 * 24 * 3600

# What a member does with a retained catalogue entry of its group, given its own stored one.
ADOPT = "adopt"  # it does not have the subscription: create it from the entry
TAKE = "take"  # the entry is a newer definition: replace its own with it
DROP = "drop"  # the entry is a newer tombstone: drop its own
REPUBLISH = "republish"  # its own is newer than the entry: publish its own over it
KEEP = "keep"  # nothing to do (the same definition, or a tombstone of something it does not have)


def version_of(created_at: str, member: str | None) -> str:
    return f"{created_at}/{member or ''}"


def stored_version(stored: StoredSubscription) -> str:
    """A subscription stored before versions existed is as old as its `created_at`."""
    return stored.version if stored.version is not None else version_of(stored.created_at, None)


def entry_version(entry: dict[str, Any]) -> str:
    """An entry's version; one published before versions existed is as old as its `created_at`."""
    version = entry.get("version")
    if isinstance(version, str):
        return version
    created = entry.get("created_at")
    return version_of(created, None) if isinstance(created, str) else ""


def tombstone(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "origin": "control", "dropped": True, "version": version, "dropped_at": now_rfc3339()}


def is_tombstone(entry: dict[str, Any]) -> bool:
    return entry.get("dropped") is True


def decide(own: StoredSubscription | None, entry: dict[str, Any], same_definition: bool) -> str:
    """What to do with a retained run-time `entry` when this member stores `own` (None: it has none).
    `same_definition`: the entry defines what `own` already runs (never true for a tombstone)."""
    if own is None:
        return KEEP if is_tombstone(entry) else ADOPT
    newer = entry_version(entry) > stored_version(own)
    if is_tombstone(entry):
        return DROP if newer else REPUBLISH
    if same_definition:
        return KEEP
    return TAKE if newer else REPUBLISH
