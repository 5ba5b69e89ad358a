"""Archive files to object storage (`[archive] upload = "s3://…"`, "gs://…", "az://…"), in order, through outages.

Each file the archive renames into place is queued (`enqueue`, on the engine thread); a thread of
its own uploads the queue head through the `pyarrow.fs` filesystem of egress/object_store.py (S3 or
S3-compatible, Google Cloud Storage, Azure Blob Storage; credentials from the config or the standard
environment) to `{prefix}/{path under [archive] dir}`. An object appears only complete: the bytes go to
a temporary key `{key}.uploading` (no `.parquet` suffix, so a reader's glob skips it) and are then moved
to the final key (object_store.publish: a server-side copy, then delete of the temporary key); each of
the three stores makes a copied object visible whole. The temporary key matters on Azure, where pyarrow
creates the blob, empty, when the stream opens (seen with Azurite), so the final key would be listed early.
When the endpoint cannot be reached, the head is retried with backoff and nothing behind it is
skipped, so files arrive in the order they were rolled. The queue is persisted in
`{state_dir}/archive-upload.json` (rewritten atomically at each change), so a restart resumes it; a file
queued again after a crash before its entry was removed is uploaded again to the same key (an
overwrite, not a second copy). With `keep_local = false` a local file is deleted once uploaded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from arros_mqtt.config import ArchiveConfig
from arros_mqtt.egress.object_store import open_store, publish

log = logging.getLogger(__name__)
RETRY_MIN, RETRY_MAX = 0.5, 30.0
CHUNK = 8 * 1024 * 1024


class ArchiveUploader:
    def __init__(self, archive: ArchiveConfig, root: Path, state_dir: str | Path) -> None:
        assert archive.upload is not None
        # made here, so that a missing Azure account etc. fails the start in one line; the network is
        # first used on the upload thread
        self._fs, self._target = open_store(archive.upload, archive)
        self.url = archive.upload
        self.archive = archive
        self.root = root
        self.keep_local = archive.keep_local
        self.queue_path = Path(state_dir) / "archive-upload.json"
        self.uploaded = 0  # files uploaded since start
        self.error: str | None = None  # the last upload failure, None once one succeeds
        self._queue: list[str] = self._load()  # paths relative to `root`, oldest first
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arros-archive-upload", daemon=True)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, path: Path) -> None:
        """A file now complete under the archive root: upload it after those queued before."""
        with self._lock:
            self._queue.append(str(path.relative_to(self.root)))
            self._save()
            self._lock.notify_all()

    def stop(self, timeout: float = 2.0) -> None:
        """What is not uploaded stays queued for the next start."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Until the queue is empty (tests, shutdown); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._queue, timeout)

    def _run(self) -> None:
        delay = RETRY_MIN
        while not self._stopping.is_set():
            with self._lock:
                if not self._queue:
                    self._lock.wait(0.5)
                    continue
                head = self._queue[0]
            try:
                self._upload(head)
            except Exception as exc:  # unreachable endpoint, denied, full: the head waits, in order
                if self.error is None:
                    log.warning("archive upload to %s paused: %s (retrying; files stay queued)",
                                self.url, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self.error = str(exc)
                self._stopping.wait(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            if self.error is not None:
                log.info("archive upload to %s resumed", self.url)
            self.error, delay = None, RETRY_MIN
            self.uploaded += 1
            with self._lock:
                self._queue.pop(0)
                self._save()
                self._lock.notify_all()
            if not self.keep_local:
                (self.root / head).unlink(missing_ok=True)

    def _upload(self, relative: str) -> None:
        local = self.root / relative
        if not local.exists():
            log.warning("archive upload: %s is gone locally; not uploaded", local)
            return
        key = f"{self._target.root}/{relative}"
        temporary = f"{key}.uploading"
        with open(local, "rb") as source, self._fs.open_output_stream(temporary) as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
        publish(self._fs, temporary, key)
        size = self._fs.get_file_info(key).size
        if size != local.stat().st_size:
            raise OSError(f"{self._target.kind}://{key} has {size} bytes, the local file {local.stat().st_size}")

    def _load(self) -> list[str]:
        try:
            queue = json.loads(self.queue_path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("archive upload: cannot read %s (%s); files queued before it are not uploaded",
                      self.queue_path, exc)
            return []
        return [entry for entry in queue if isinstance(entry, str)]

    def _save(self) -> None:
        """With the lock held: the queue on disk, replaced atomically."""
        self.queue_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.queue_path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump(self._queue, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.queue_path)
