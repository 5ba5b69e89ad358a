"""A group's subscriptions and statuses as one view: each member's share, and the group's sum.

Merged by the reader (`arros sub`), not by a member: every member already answers each request and keeps
its last status retained at `{prefix}/status/{name}/{member}`, so summing them needs no coordinator, no
election and no agreement between members on who is in the group; and a member that is gone (its presence
says offline, or it did not answer) still shows, with its last retained counters (docs/cluster.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNNING, PAUSED, OFFLINE, NO_REPLY = "running", "paused", "offline", "no reply"
SUMMED = ("batches", "rows_in", "rows_out", "messages_out", "messages_too_large", "late_rows", "errors",
          "rows_failed", "state_rows", "state_bytes")
DESCRIBED = ("origin", "kind", "stream", "output")


@dataclass(frozen=True)
class Share:
    """One member's part of one subscription: `state` is running or paused (it answered), offline or no reply
    (its last retained status); `status` its counters."""

    name: str
    member: str
    state: str
    status: dict[str, Any]

    @property
    def answered(self) -> bool:
        return self.state in (RUNNING, PAUSED)


def _state(status: dict[str, Any]) -> str:
    return PAUSED if status.get("paused") else RUNNING


def shares(answered: dict[str, list[dict[str, Any]]], retained: dict[tuple[str, str], dict[str, Any]],
           offline: set[str], missing: set[str]) -> list[Share]:
    """Every member's share, by (name, member). `answered`: per member that replied, its subscriptions (a `list`
    result's rows, or one `describe` status); `retained`: the retained statuses by (name, member); a member in
    `offline` (its presence says so) or `missing` (online but no reply) shows with its retained status for each
    subscription some member that answered runs."""
    found = [Share(str(s["name"]), member, _state(s), s) for member, rows in answered.items() for s in rows]
    described = {share.name: {key: share.status.get(key) for key in DESCRIBED} for share in found}
    for (name, member), status in retained.items():
        if name in described and member not in answered and (member in offline or member in missing):
            found.append(Share(name, member, OFFLINE if member in offline else NO_REPLY,
                               {**described[name], **status}))
    return sorted(found, key=lambda share: (share.name, share.member))


def merge(group: list[Share]) -> dict[str, Any]:
    """One subscription's shares as one status: counters summed over every member (a gone member's last ones
    too), `members` the members that answered, `offline` the others, `state` the worst of the answering
    members (paused on any member: paused; none answered: offline)."""
    live = [share for share in group if share.answered]
    first = (live or group)[0].status
    merged: dict[str, Any] = {"name": group[0].name, **{key: first.get(key) for key in DESCRIBED if key in first}}
    if not live:
        merged["state"] = OFFLINE
    else:
        merged["state"] = PAUSED if any(share.state == PAUSED for share in live) else RUNNING
    merged["members"] = [share.member for share in live]
    merged["offline"] = [share.member for share in group if not share.answered]
    reasons = sorted({str(s.status["paused_reason"]) for s in live if s.status.get("paused_reason")})
    if reasons:
        merged["paused_reasons"] = reasons
    for key in SUMMED:
        values = [share.status[key] for share in group if isinstance(share.status.get(key), int)]
        if values:
            merged[key] = sum(values)
    return merged


def merged(found: list[Share]) -> list[dict[str, Any]]:
    """One merged status per subscription, by name."""
    by_name: dict[str, list[Share]] = {}
    for share in found:
        by_name.setdefault(share.name, []).append(share)
    return [merge(by_name[name]) for name in sorted(by_name)]


def where(status: dict[str, Any]) -> str:
    """`m0,m1(offline)`: the members a merged status covers."""
    return ",".join([*status["members"], *(f"{m}(offline)" for m in status["offline"])]) or "-"
