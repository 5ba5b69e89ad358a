"""An uplink's on-disk buffer: messages waiting for the cloud broker, in order, surviving kill -9 and restarts.

Files under `{state_dir}/uplinks/{name}/`: segments `{first seq:020d}.seg`, each a run of records

    body length (u32) | CRC-32 of body (u32) | body = seq (u64) | received ms (i64) | qos (u8) |
    topic length (u16) | topic (UTF-8) | payload

and `cursor`: the first seq not yet confirmed by the cloud broker (u64) and its CRC-32, replaced
atomically (write, fsync, rename). A record is written with one `write` call, so once `append` returns
it survives a crash of the process; `sync` (fsync) makes it survive a power cut. Opening the buffer
cuts off a torn last record (the CRC finds it). Whole segments are deleted once every record in them
is confirmed, or dropped when the buffer is full and `when_full = "drop_oldest"`: the oldest segment
goes, and the records in it never handed to the cloud client are counted in `dropped`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)
_FRAME = struct.Struct("<II")
_BODY = struct.Struct("<QqBH")
_CURSOR = struct.Struct("<QI")
READ_CHUNK = 256 * 1024
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
SEGMENTS_PER_BUFFER = 16  # segments are at most buffer / 16, so drop_oldest drops at most 1/16 at a time


class Record(NamedTuple):
    seq: int
    received_ms: int
    qos: int
    topic: str
    payload: bytes


@dataclass
class _Segment:
    first_seq: int
    path: Path
    count: int = 0
    size: int = 0

    @property
    def end_seq(self) -> int:
        return self.first_seq + self.count


def encode(seq: int, received_ms: int, qos: int, topic: str, payload: bytes) -> bytes:
    topic_bytes = topic.encode()
    body = _BODY.pack(seq, received_ms, qos, len(topic_bytes)) + topic_bytes + payload
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def decode(data: bytes | memoryview, offset: int) -> tuple[Record, int] | None:
    """The record at `offset` and the offset after it; None for an incomplete or corrupt record."""
    if offset + _FRAME.size > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, offset)
    start = offset + _FRAME.size
    end = start + length
    if length < _BODY.size or end > len(data) or zlib.crc32(data[start:end]) != crc:
        return None
    seq, received_ms, qos, topic_length = _BODY.unpack_from(data, start)
    topic_end = start + _BODY.size + topic_length
    topic = bytes(data[start + _BODY.size:topic_end]).decode(errors="replace")
    return Record(seq, received_ms, qos, topic, bytes(data[topic_end:end])), end


class UplinkBuffer:
    """Thread-safe: the intake appends, the forwarder takes and confirms; one lock, held briefly."""

    def __init__(self, directory: str | Path, capacity: int, drop_oldest: bool = True) -> None:
        self.dir = Path(directory)
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.segment_bytes = max(16 * 1024, min(MAX_SEGMENT_BYTES, capacity // SEGMENTS_PER_BUFFER))
        self.dropped = 0  # records dropped unsent since this process started (drop_oldest)
        self.bytes = 0  # on disk, in live segments
        self.changed = threading.Condition(threading.Lock())
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # the last segment's, for appends
        self._next_seq = 0
        self._confirmed = 0  # every seq below this reached the cloud broker
        self._cursor_written = 0
        self._read_seq = 0  # the next record to hand out ...
        self._read_at: tuple[int, int] = (0, 0)  # ... at (segment index, offset)
        self._read_fds: dict[int, int] = {}  # segment first_seq -> fd
        self._open()

    # -- recovery --

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._confirmed = self._read_cursor()
        self._cursor_written = self._confirmed
        for path in sorted(self.dir.glob("*.seg")):
            segment = self._scan(path)
            if segment.count == 0 or segment.end_seq <= self._confirmed:
                path.unlink()
                continue
            self._segments.append(segment)
            self.bytes += segment.size
        self._next_seq = max(self._confirmed, self._segments[-1].end_seq if self._segments else 0)
        self._read_seq = self._confirmed
        self._read_at = self._locate(self._confirmed)

    def _scan(self, path: Path) -> _Segment:
        """Count a segment's whole records; cut off a torn or corrupt tail."""
        data = path.read_bytes()
        segment = _Segment(int(path.stem), path)
        offset = 0
        while (decoded := decode(data, offset)) is not None:
            record, offset = decoded
            if record.seq != segment.end_seq:
                break
            segment.count += 1
        if offset < len(data):
            log.warning("uplink buffer %s: cut off %d bytes of a torn or corrupt record", path, len(data) - offset)
            with open(path, "r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())
        segment.size = offset
        return segment

    def _locate(self, seq: int) -> tuple[int, int]:
        """(segment index, byte offset) of record `seq` (or of the end, when it is not written yet)."""
        for index, segment in enumerate(self._segments):
            if seq < segment.end_seq:
                data = segment.path.read_bytes()
                offset = 0
                while (decoded := decode(data, offset)) is not None and decoded[0].seq < seq:
                    offset = decoded[1]
                return index, offset
        return len(self._segments), 0

    def _read_cursor(self) -> int:
        try:
            data = (self.dir / "cursor").read_bytes()
        except FileNotFoundError:
            return 0
        if len(data) == _CURSOR.size:
            seq, crc = _CURSOR.unpack(data)
            if zlib.crc32(data[:8]) == crc:
                return seq
        log.warning("uplink buffer %s: unreadable cursor; sending everything in the buffer again", self.dir)
        return 0

    # -- the intake's side --

    def append(self, topic: str, payload: bytes, qos: int, received_ms: int | None = None) -> bool:
        """Write one message; False when full and `when_full = "stop"` (nothing written)."""
        with self.changed:
            frame = encode(self._next_seq, received_ms if received_ms is not None else time.time_ns() // 1_000_000,
                           qos, topic, payload)
            if len(frame) > self.capacity:  # could never fit: dropped in either mode, or stop would wait forever
                self.dropped += 1
                log.warning("uplink buffer %s: a %d-byte message on %s is larger than the buffer; dropped",
                            self.dir, len(frame), topic)
                return True
            while self.bytes + len(frame) > self.capacity and self._segments:
                if not self.drop_oldest:
                    return False
                self._drop_oldest_segment()
            if self._fd is None or self._segments[-1].size + len(frame) > self.segment_bytes:
                self._roll()
            os.write(self._fd, frame)
            segment = self._segments[-1]
            segment.count += 1
            segment.size += len(frame)
            self.bytes += len(frame)
            self._next_seq += 1
            self.changed.notify_all()
            return True

    def has_room(self, size: int) -> bool:
        with self.changed:
            return self.bytes + size <= self.capacity

    def sync(self) -> None:
        """fsync the segment being appended to: what was appended survives a power cut."""
        with self.changed:
            fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):  # closed by a roll meanwhile: the roll synced it
                os.fsync(fd)

    def _roll(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        if self._segments and self._segments[-1].count == 0:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
            return
        segment = _Segment(self._next_seq, self.dir / f"{self._next_seq:020d}.seg")
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segments.append(segment)
        self._sync_dir()

    def _drop_oldest_segment(self) -> None:
        """Called with the lock held: the oldest segment goes; its records not handed out count as dropped."""
        if len(self._segments) == 1:
            self._roll()  # the one segment is full of unsent records: close it so it can go
        oldest = self._segments.pop(0)
        unsent = oldest.end_seq - max(self._read_seq, oldest.first_seq)
        self.dropped += max(0, unsent)
        self.bytes -= oldest.size
        self._confirmed = max(self._confirmed, oldest.end_seq)
        if self._read_seq < oldest.end_seq or self._read_at[0] == 0:
            self._read_seq, self._read_at = max(self._read_seq, oldest.end_seq), (0, 0)
        else:
            self._read_at = (self._read_at[0] - 1, self._read_at[1])
        self._close_reader(oldest.first_seq)
        oldest.path.unlink(missing_ok=True)
        log.warning("uplink buffer %s full: dropped %d unsent messages (seq %d..%d)", self.dir, max(0, unsent),
                    oldest.first_seq, oldest.end_seq - 1)

    # -- the forwarder's side --

    def take(self, limit: int) -> list[Record]:
        """Up to `limit` records after the last one taken, in order; [] when there are none (yet)."""
        with self.changed:
            while True:
                index, offset = self._read_at
                if index >= len(self._segments):
                    return []
                segment = self._segments[index]
                if offset < segment.size or index == len(self._segments) - 1:
                    break
                self._read_at = (index + 1, 0)  # this segment is read to its end and another follows
            records = self._read(segment, offset, limit)
            if records:
                self._read_seq = records[-1][0].seq + 1
                self._read_at = (index, records[-1][1])
            return [record for record, _ in records]

    def _read(self, segment: _Segment, offset: int, limit: int) -> list[tuple[Record, int]]:
        """Whole records from `offset` of a segment, each with the offset after it (the lock is held)."""
        fd = self._reader(segment)
        size = min(READ_CHUNK, segment.size - offset)
        if size <= 0:
            return []
        data = os.pread(fd, size, offset)
        if decode(data, 0) is None and segment.size - offset > READ_CHUNK:  # one record larger than a chunk
            data = os.pread(fd, segment.size - offset, offset)
        records = []
        position = 0
        while len(records) < limit and (decoded := decode(data, position)) is not None:
            record, position = decoded
            records.append((record, offset + position))
        return records

    def wait_for_records(self, timeout: float) -> None:
        """Until a record not handed out yet is there (or `timeout`)."""
        with self.changed:
            if self._read_seq >= self._next_seq:
                self.changed.wait(timeout)

    def confirm(self, seq: int, persist_after: float = 0.05) -> None:
        """Every record below `seq` reached the cloud broker: delete segments wholly confirmed and write
        the cursor (at most every `persist_after` seconds; 0: now)."""
        with self.changed:
            if seq <= self._confirmed:
                seq = self._confirmed
            self._confirmed = seq
            while len(self._segments) > 1 and self._segments[0].end_seq <= seq and self._read_at[0] > 0:
                done = self._segments.pop(0)
                self.bytes -= done.size
                self._read_at = (self._read_at[0] - 1, self._read_at[1])
                self._close_reader(done.first_seq)
                done.path.unlink(missing_ok=True)
        if seq != self._cursor_written and (persist_after == 0 or self._cursor_due(persist_after)):
            self._write_cursor(seq)

    def flush_cursor(self) -> None:
        with self.changed:
            seq = self._confirmed
        if seq != self._cursor_written:
            self._write_cursor(seq)

    def _cursor_due(self, interval: float) -> bool:
        now = time.monotonic()
        if now - getattr(self, "_cursor_at", 0.0) < interval:
            return False
        self._cursor_at = now
        return True

    def _write_cursor(self, seq: int) -> None:
        tmp = self.dir / "cursor.tmp"
        head = struct.pack("<Q", seq)
        with open(tmp, "wb") as handle:
            handle.write(head + struct.pack("<I", zlib.crc32(head)))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.dir / "cursor")
        self._cursor_written = seq

    # -- what health reports --

    @property
    def pending(self) -> int:
        """Records not yet confirmed by the cloud broker."""
        with self.changed:
            return self._next_seq - self._confirmed

    @property
    def unread(self) -> int:
        """Records not yet handed to the cloud client."""
        with self.changed:
            return self._next_seq - self._read_seq

    @property
    def confirmed_seq(self) -> int:
        with self.changed:
            return self._confirmed

    def unread_ms(self) -> int | None:
        """Received time of the oldest record not handed out yet, None when there is none."""
        with self.changed:
            if self._read_seq >= self._next_seq:
                return None
            index, offset = self._read_at
            if index < len(self._segments) and offset >= self._segments[index].size:
                index, offset = index + 1, 0
            if index >= len(self._segments):
                return None
            head = os.pread(self._reader(self._segments[index]), _FRAME.size + _BODY.size, offset)
        if len(head) < _FRAME.size + _BODY.size:
            return None
        return _BODY.unpack_from(head, _FRAME.size)[1]

    def close(self) -> None:
        self.flush_cursor()
        with self.changed:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            for first in list(self._read_fds):
                self._close_reader(first)

    def _reader(self, segment: _Segment) -> int:
        fd = self._read_fds.get(segment.first_seq)
        if fd is None:
            fd = self._read_fds[segment.first_seq] = os.open(segment.path, os.O_RDONLY)
        return fd

    def _close_reader(self, first_seq: int) -> None:
        fd = self._read_fds.pop(first_seq, None)
        if fd is not None:
            os.close(fd)

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
