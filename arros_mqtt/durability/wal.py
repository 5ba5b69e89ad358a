"""The write-ahead log: every decoded micro-batch (and every other input of the engine) on disk, in order,
before its MQTT messages are acknowledged to the broker.

Files `{state_dir}/wal/wal-{first seq}.log`, each a run of frames:

    b"AWL1" | header length (u32) | body length (u32) | CRC-32 of header + body (u32) | header | body

The header is JSON (`seq`, `kind`, `stream`, `t` = append time in epoch ms, kind-specific fields), the
body an Arrow IPC stream (rows, dead letters) preceded by the records' MQTT packet ids (`mids`, u16 each).
`sync` is the fsync that makes appended frames durable; the caller decides how often (per micro-batch or
per interval). Whole files are deleted once a checkpoint no longer needs them (`truncate_before`).

The log knows its synced end: after each fsync it overwrites the small file `synced` (segment, byte offset
and seq synced so far; CRC-protected, not fsynced itself: exact after a process crash such as kill -9,
possibly behind after a power loss). Opening the log tells the two kinds of bad frame apart:
- a **torn tail**: a frame that fails its CRC with no good frame after it, past the synced end of the last
  file. A frame is written with one `write` call, so only a crash while writing the last frames can leave
  it, and nothing in it was acknowledged: it is cut off.
- **corruption**: a CRC failure anywhere else (a good frame follows it, or it lies before the synced end,
  or in an older file, all fully synced). Those records were acknowledged: they are skipped, counted
  (`damaged_records`) and logged as an ERROR with the file, byte range and seqs lost, and every record
  after them is kept (reading resynchronises on the next frame whose magic and CRC check out). The
  damaged bytes stay in place for inspection.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from arros_mqtt.core.errors import ArrosError

log = logging.getLogger(__name__)
MAGIC = b"AWL1"
_HEAD = struct.Struct("<4sIII")
SYNCED_MAGIC = b"AWS1"
_SYNCED = struct.Struct("<4sQQQI")  # magic, first seq of the segment, bytes synced in it, seq synced, CRC-32
SYNCED_FILE = "synced"
SEGMENT_BYTES = 64 * 1024 * 1024  # a new file past this size, so old ones can be deleted whole
ROWS, DEADLETTERS, WATERMARK, CONFIRMED = "rows", "deadletters", "watermark", "confirmed"


class WalError(ArrosError):
    """The log could not be written (disk full, read-only, I/O error): nothing may be acknowledged."""


@dataclass
class Record:
    seq: int
    kind: str
    header: dict[str, Any]
    table: pa.Table | None = None
    mids: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint16))

    @property
    def stream(self) -> str | None:
        return self.header.get("stream")

    @property
    def time_ms(self) -> int:
        return self.header["t"]


def encode_table(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    crc = zlib.crc32(body, zlib.crc32(head))
    return _HEAD.pack(MAGIC, len(head), len(body), crc) + head + body


class WriteAheadLog:
    """Single writer (the engine thread). `append` returns the record's seq; `sync` makes it durable."""

    def __init__(self, directory: str | Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.next_seq = 1
        self.synced_seq = 0  # every record up to this one is on disk (fsynced)
        self.appended_seq = 0
        self.bytes = 0  # size of all segments
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # bytes of whole frames in the open segment
        self._marker_fd: int | None = None
        self.damaged_records = 0  # acknowledged records found corrupt at `open` (skipped, the rest kept)
        self.damaged_ranges: list[tuple[str, int, int]] = []  # (file, start, end) of the corrupt bytes

    # -- opening and reading --

    def open(self) -> None:
        """Create the folder, cut a torn tail off, report corruption, find the next seq (module docstring)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WalError(f"cannot create the write-ahead log folder {self.dir}: {exc.strerror}") from None
        marker_segment, marker_offset, marker_seq = _read_marker(self.dir / SYNCED_FILE)
        last = 0
        segments = self.segments()
        for index, path in enumerate(segments):
            is_last = index == len(segments) - 1
            synced_end = (marker_offset if _first_seq(path) == marker_segment else 0) if is_last else None
            last = max(last, self._check(path, synced_end, last))
        last = max(last, marker_seq)  # seqs of lost synced records are never given out again
        self.next_seq = last + 1
        self.appended_seq = self.synced_seq = last
        self.bytes = sum(p.stat().st_size for p in self.segments())

    def _check(self, path: Path, synced_end: int | None, previous_seq: int) -> int:
        """Scan one file (`synced_end` None: wholly synced); returns its last good seq (or `previous_seq`)."""
        size = path.stat().st_size
        end, last = 0, previous_seq
        for header, _body, start, frame_end in _frames(path):
            if start > end:
                self._damaged(path, end, start, last, header["seq"])
            end, last = frame_end, header["seq"]
        if end < size:
            if synced_end is not None and end >= synced_end:
                log.warning("write-ahead log: cutting a torn frame off the end of %s at byte %d (written after "
                            "the last sync, so none of its messages were acknowledged)", path.name, end)
                with open(path, "r+b") as handle:
                    handle.truncate(end)
                    os.fsync(handle.fileno())
            else:
                self._damaged(path, end, size, last, None)
        return last

    def _damaged(self, path: Path, start: int, end: int, before: int, after: int | None) -> None:
        lost = (after - before - 1) if after is not None else None
        if lost:
            self.damaged_records += lost
        self.damaged_ranges.append((path.name, start, end))
        if after is None:
            which = f"the records after {before} in it"
        else:
            which = f"records {before + 1}..{after - 1} ({lost})" if lost else "no whole record"
        log.error("write-ahead log CORRUPT: %s bytes %d..%d fail their CRC although they were synced (acknowledged); "
                  "%s skipped, every record after them kept; the damaged bytes are left in place", path.name,
                  start, end, which)

    def first_seq(self) -> int:
        """The seq of the oldest record the log can still hold (`next_seq` when it has no file)."""
        segments = self.segments()
        return _first_seq(segments[0]) if segments else self.next_seq

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("wal-*.log"))

    def records(self, after: int = 0, kinds: tuple[str, ...] | None = None, tables: bool = True) -> Iterator[Record]:
        """Records with seq > `after` (of `kinds`), in order; `tables=False` skips decoding the Arrow data."""
        segments = self.segments()
        for index, path in enumerate(segments):
            if index + 1 < len(segments) and _first_seq(segments[index + 1]) <= after + 1:
                continue  # every record of this file is at or before `after`
            for header, body, _start, _end in _frames(path):
                seq = header["seq"]
                if seq <= after:
                    continue
                kind = header["kind"]
                if kinds is not None and kind not in kinds:
                    continue
                yield _record(header, body, tables)

    # -- writing --

    def append(self, kind: str, header: dict[str, Any], table: pa.Table | None = None,
               mids: np.ndarray | None = None) -> int:
        """Write one record (not yet durable: see `sync`); WalError if the disk refuses it."""
        seq = self.next_seq
        mid_bytes = b"" if mids is None else np.asarray(mids, np.uint16).tobytes()
        body = mid_bytes + (encode_table(table) if table is not None else b"")
        data = frame({**header, "seq": seq, "kind": kind, "mids": len(mid_bytes) // 2}, body)
        try:
            if self._fd is None or (self._size + len(data) > self.segment_bytes and self._size):
                self._roll(seq)
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(28, "short write (disk full?)")
        except OSError as exc:
            self._undo()
            raise WalError(f"cannot write the write-ahead log in {self.dir}: {exc.strerror or exc}") from None
        self._size += len(data)
        self.bytes += len(data)
        self.next_seq = seq + 1
        self.appended_seq = seq
        return seq

    def sync(self) -> int:
        """fsync what was appended; returns the seq that is now durable."""
        if self._fd is not None and self.synced_seq < self.appended_seq:
            try:
                os.fdatasync(self._fd)
                self._write_marker()
            except OSError as exc:
                raise WalError(f"cannot sync the write-ahead log in {self.dir}: {exc.strerror}") from None
        self.synced_seq = self.appended_seq
        return self.synced_seq

    def _write_marker(self) -> None:
        """Record the synced end (see the module docstring): one small overwrite, no fsync of its own."""
        if self._marker_fd is None:
            self._marker_fd = os.open(self.dir / SYNCED_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
        assert self._path is not None
        body = _SYNCED.pack(SYNCED_MAGIC, _first_seq(self._path), self._size, self.appended_seq, 0)[:-4]
        os.pwrite(self._marker_fd, body + struct.pack("<I", zlib.crc32(body)), 0)

    def truncate_before(self, seq: int) -> int:
        """Delete whole files holding only records before `seq`; returns how many were deleted."""
        segments = self.segments()
        removed = 0
        for path, following in itertools.pairwise(segments):
            if _first_seq(following) > seq or path == self._path:
                break
            size = path.stat().st_size
            path.unlink()
            self.bytes -= size
            removed += 1
        return removed

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.sync()
            os.close(self._fd)
            self._fd = None
        if self._marker_fd is not None:
            os.close(self._marker_fd)
            self._marker_fd = None

    def _roll(self, seq: int) -> None:
        if self._fd is not None:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None
        path = self.dir / f"wal-{seq:020d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._path, self._size = path, 0
        _sync_dir(self.dir)

    def _undo(self) -> None:
        """After a failed write: cut the file back to its last whole frame, so a retry starts clean."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_seq(path: Path) -> int:
    return int(path.stem.split("-", 1)[1])


def _frames(path: Path) -> Iterator[tuple[dict[str, Any], bytes, int, int]]:
    """(header, body, start, end offset) of the frames with a good CRC. Past a bad one it resynchronises on
    the next offset holding the magic and a frame whose CRC checks out, so damage costs only its records."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    view = memoryview(data)
    offset = 0
    while offset + _HEAD.size <= len(data):
        magic, head_len, body_len, crc = _HEAD.unpack_from(data, offset)
        start = offset + _HEAD.size
        end = start + head_len + body_len
        good = magic == MAGIC and end <= len(data)
        if good:
            head, body = view[start:start + head_len], view[start + head_len:end]
            good = zlib.crc32(body, zlib.crc32(head)) == crc
        if not good:
            offset = data.find(MAGIC, offset + 1)
            if offset < 0:
                return
            continue
        yield orjson.loads(head), bytes(body), offset, end
        offset = end


def _read_marker(path: Path) -> tuple[int, int, int]:
    """(first seq of the segment, bytes synced in it, seq synced) from the `synced` file; zeros if it is
    missing or fails its CRC (then only the rule "a good frame follows" tells corruption from a torn tail)."""
    try:
        data = path.read_bytes()[:_SYNCED.size]
    except OSError:
        return 0, 0, 0
    if len(data) < _SYNCED.size:
        return 0, 0, 0
    magic, segment, offset, seq, crc = _SYNCED.unpack(data)
    if magic != SYNCED_MAGIC or zlib.crc32(data[:-4]) != crc:
        log.warning("write-ahead log: %s is unreadable; a bad last frame counts as a torn tail", path.name)
        return 0, 0, 0
    return segment, offset, seq


def _record(header: dict[str, Any], body: bytes, tables: bool = True) -> Record:
    n_mids = header.get("mids", 0)
    mids = np.frombuffer(body, np.uint16, count=n_mids) if n_mids else np.empty(0, np.uint16)
    rest = body[2 * n_mids:]
    table = pa.ipc.open_stream(rest).read_all() if rest and tables else None
    return Record(header["seq"], header["kind"], header, table, mids)
