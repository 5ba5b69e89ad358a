"""Archive retention: whole hour partitions whose hour ended longer ago than `retention` are deleted.

Age is partition (event) time, not file modification time, so a replayed backlog of old data
expires with its hour. Partitions with a file still being written are left for the next check.
Everything under `{dir}/streams` and `{dir}/subscriptions` is covered, also folders of streams or
subscriptions no longer configured.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from arros_mqtt.egress.archive_layout import archive_folders, partition_folders

log = logging.getLogger(__name__)


def expire_partitions(root: Path, retention: float, now: float, keep: set[Path]) -> list[Path]:
    """Delete expired hour partitions under `root` (not those in `keep`); returns what was deleted."""
    newest_expired = int(now - retention) // 3600 - 1  # the last hour that ended before the cutoff
    removed = []
    for folders in archive_folders(root).values():
        for folder in folders.values():
            for hour, path in partition_folders(folder):
                if hour > newest_expired:
                    break
                if path in keep:
                    continue
                try:
                    shutil.rmtree(path)
                except OSError as exc:
                    log.warning("archive retention: cannot delete %s: %s", path, exc)
                    continue
                removed.append(path)
                with contextlib.suppress(OSError):  # the date folder goes when its last hour went
                    path.parent.rmdir()
    if removed:
        log.info("archive retention: deleted %d partitions older than %.0fs", len(removed), retention)
    return removed
