"""QoS 2 results the broker may hold: an fsynced journal, so a restart neither loses nor repeats them.

MQTT QoS 2 delivers a message once per packet id within the broker's session of the sender: the
broker keeps the id of a PUBLISH it received until the PUBREL and answers a re-sent copy (DUP) without
delivering it again; Mosquitto delivers on PUBREL. Across a crash of the sender this holds only if the
sender remembers, durably, which ids it had sent and which it had released:

- `published`, synced before the PUBLISH leaves: (packet id, log seq, topic, payload, retain);
- `released`, synced before its PUBREL leaves: re-sending a completed id as PUBLISH would be a new
  message to the broker, so after a crash a released id gets a PUBREL only;
- `completed` on PUBCOMP, not synced by itself: a PUBREL re-sent for a completed id delivers nothing.

At start, `pending` messages are re-sent (released: PUBREL; else PUBLISH with DUP, then PUBREL) and
`sent_outputs()` (every message of a record after `confirmed`) tells the log replay which regenerated
outputs the broker has already. Each record carries a CRC; a torn tail is cut off at open. The file is
rewritten with only the live entries (pending ones, completed ones of records after `confirmed`) when
it has grown past `compact_bytes`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PUBLISHED, RELEASED, COMPLETED, CONFIRMED, WITHDRAWN = 1, 2, 3, 4, 5
_RECORD = struct.Struct("<IBHQBHI")  # crc32 of the rest, kind, packet id, seq, retain, topic length, payload length
COMPACT_BYTES = 4 * 1024 * 1024
FILE_NAME = "qos2.journal"


@dataclass
class Entry:
    """One QoS 2 message the broker was sent."""

    mid: int
    seq: int
    topic: str
    payload: bytes
    retain: bool
    released: bool = False

    @property
    def output(self) -> tuple[int, str, bytes]:
        return self.seq, self.topic, self.payload


class OutputJournal:
    def __init__(self, directory: Path, compact_bytes: int = COMPACT_BYTES) -> None:
        self.dir = directory
        self.path = directory / FILE_NAME
        self.compact_bytes = compact_bytes
        self.pending: dict[int, Entry] = {}  # packet id -> message not completed yet, in publish order
        self.completed: list[Entry] = []  # completed messages of records after `confirmed`
        self.confirmed = 0  # every output of the records up to this log seq is acknowledged
        self.syncs = 0
        self._buffer = bytearray()
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()

    # -- start --

    def open(self) -> None:
        """Read what a previous run left (cutting a torn tail), then start a compacted file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._load(self.path.read_bytes())
        self._compact()

    def sent_outputs(self) -> Counter[tuple[int, str, bytes]]:
        """(seq, topic, payload) of every message the broker was sent for records after `confirmed`: the
        log replay regenerates these and must not queue them again (a multiset: equal outputs may repeat)."""
        with self._lock:
            entries = [*self.completed, *self.pending.values()]
            return Counter(e.output for e in entries if e.seq > self.confirmed)

    # -- while running (engine, network and release threads) --

    def published(self, entries: list[Entry]) -> None:
        with self._lock:
            for entry in entries:
                self.pending[entry.mid] = entry
                self._append(PUBLISHED, entry.mid, entry.seq, entry.topic.encode(), entry.payload, entry.retain)

    def withdraw(self, mids: list[int]) -> None:
        """Messages recorded by `published` whose sync failed, so they were never sent: forgotten (if
        their records did reach the disk, a restart sends them once, and the replay skips them)."""
        with self._lock:
            for mid in mids:
                if self.pending.pop(mid, None) is not None:
                    self._append(WITHDRAWN, mid)

    def released(self, mids: list[int]) -> list[int]:
        """Records the release of those ids still pending; returns them (the caller sends their PUBREL
        after `sync`)."""
        out = []
        with self._lock:
            for mid in mids:
                entry = self.pending.get(mid)
                if entry is not None and not entry.released:
                    entry.released = True
                    self._append(RELEASED, mid)
                    out.append(mid)
        return out

    def complete(self, mid: int) -> None:
        with self._lock:
            entry = self.pending.pop(mid, None)
            if entry is not None:
                self.completed.append(entry)
                self._append(COMPLETED, mid)

    def confirm(self, through: int) -> None:
        """Outputs of records up to `through` are all acknowledged: their completed entries can go."""
        with self._lock:
            if through <= self.confirmed:
                return
            self.confirmed = through
            self.completed = [e for e in self.completed if e.seq > through]
            self._append(CONFIRMED, 0, through)

    def sync(self) -> None:
        """Write and fsync what was recorded (one fsync for every record since the last one). On an
        OSError (disk full) the file is cut back to its last complete record and the records stay
        buffered for the next try."""
        with self._lock:
            if not self._buffer or self._fd is None:
                return
            try:
                with memoryview(self._buffer) as view:
                    written = 0
                    while written < len(view):
                        written += os.write(self._fd, view[written:])
                os.fsync(self._fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                raise
            self._size += len(self._buffer)
            self._buffer.clear()
            self.syncs += 1
            if self._size >= self.compact_bytes:
                self._compact()

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            with contextlib.suppress(OSError):
                os.write(self._fd, self._buffer)
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    # -- internals --

    def _append(self, kind: int, mid: int, seq: int = 0, topic: bytes = b"", payload: bytes = b"",
                retain: bool = False) -> None:
        body = _RECORD.pack(0, kind, mid, seq, int(retain), len(topic), len(payload))[4:] + topic + payload
        self._buffer += struct.pack("<I", zlib.crc32(body)) + body

    def _load(self, data: bytes) -> None:
        view = memoryview(data)
        offset = 0
        while offset + _RECORD.size <= len(data):
            crc, kind, mid, seq, retain, topic_len, payload_len = _RECORD.unpack_from(data, offset)
            end = offset + _RECORD.size + topic_len + payload_len
            if end > len(data) or zlib.crc32(view[offset + 4:end]) != crc:
                break  # a torn tail: written, never synced (so its PUBLISH or PUBREL never left)
            topic_start = offset + _RECORD.size
            if kind == PUBLISHED:
                earlier = self.pending.pop(mid, None)
                if earlier is not None:  # its id was reused, so it completed (that record was lost)
                    self.completed.append(earlier)
                topic = bytes(view[topic_start:topic_start + topic_len]).decode()
                self.pending[mid] = Entry(mid, seq, topic, bytes(view[topic_start + topic_len:end]), bool(retain))
            elif kind == RELEASED and mid in self.pending:
                self.pending[mid].released = True
            elif kind == COMPLETED and mid in self.pending:
                self.completed.append(self.pending.pop(mid))
            elif kind == WITHDRAWN:
                self.pending.pop(mid, None)
            elif kind == CONFIRMED:
                self.confirmed = max(self.confirmed, seq)
            offset = end
        self.completed = [e for e in self.completed if e.seq > self.confirmed]

    def _compact(self) -> None:
        """Rewrite the live entries into a new file (synced, then renamed over the old one)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._buffer.clear()
        self._append(CONFIRMED, 0, self.confirmed)
        for entry in self.completed:  # each completed before the next entry may reuse its id
            self._append(PUBLISHED, entry.mid, entry.seq, entry.topic.encode(), entry.payload, entry.retain)
            self._append(COMPLETED, entry.mid)
        for entry in self.pending.values():
            self._append(PUBLISHED, entry.mid, entry.seq, entry.topic.encode(), entry.payload, entry.retain)
            if entry.released:
                self._append(RELEASED, entry.mid)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            handle.write(self._buffer)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._size = len(self._buffer)
        self._buffer.clear()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
