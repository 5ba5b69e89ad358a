"""The write-ahead log: every decoded micro-batch (and every other input of the engine) on disk, in order,
before its MQTT messages are acknowledged to the broker.

Files `{state_dir}/wal/wal-{first seq}.log`, each a run of frames:

    b"AWL1" | header length (u32) | body length (u32) | CRC-32 of header + body (u32) | header | body

The header is JSON (`seq`, `kind`, `stream`, `t` = append time in epoch ms, kind-specific fields), the
body an Arrow IPC stream (rows, dead letters) preceded by the records' MQTT packet ids (`mids`, u16 each).
A frame is written with one `write` call; a crash can leave only the last frame torn, which the CRC
finds: opening the log cuts it off. `sync` is the fsync that makes appended frames durable; the caller
decides how often (per micro-batch or per interval). Whole files are deleted once a checkpoint no
longer needs them (`truncate_before`).
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

    # -- opening and reading --

    def open(self) -> None:
        """Create the folder, cut a torn last frame off, find the next seq. Reading starts from `records`."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WalError(f"cannot create the write-ahead log folder {self.dir}: {exc.strerror}") from None
        last = 0
        segments = self.segments()
        for index, path in enumerate(segments):
            good, last_seq = _scan(path)
            if last_seq:
                last = last_seq
            if good < path.stat().st_size:
                if index == len(segments) - 1:
                    log.warning("write-ahead log: cutting a torn frame off the end of %s (a crash while "
                                "writing it; its messages were not acknowledged)", path.name)
                    with open(path, "r+b") as handle:
                        handle.truncate(good)
                        os.fsync(handle.fileno())
                else:
                    log.error("write-ahead log: %s is damaged after byte %d; records after it in that file are "
                              "skipped", path.name, good)
        self.next_seq = last + 1
        self.appended_seq = self.synced_seq = last
        self.bytes = sum(p.stat().st_size for p in self.segments())

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("wal-*.log"))

    def records(self, after: int = 0, kinds: tuple[str, ...] | None = None, tables: bool = True) -> Iterator[Record]:
        """Records with seq > `after` (of `kinds`), in order; `tables=False` skips decoding the Arrow data."""
        segments = self.segments()
        for index, path in enumerate(segments):
            if index + 1 < len(segments) and _first_seq(segments[index + 1]) <= after + 1:
                continue  # every record of this file is at or before `after`
            for header, body, _end in _frames(path):
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
            except OSError as exc:
                raise WalError(f"cannot sync the write-ahead log in {self.dir}: {exc.strerror}") from None
        self.synced_seq = self.appended_seq
        return self.synced_seq

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


def _frames(path: Path) -> Iterator[tuple[dict[str, Any], bytes, int]]:
    """(header, body, end offset) of whole frames with a good CRC; stops at the first one that is not."""
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
        if magic != MAGIC or end > len(data):
            return
        head, body = view[start:start + head_len], view[start + head_len:end]
        if zlib.crc32(body, zlib.crc32(head)) != crc:
            return
        yield orjson.loads(head), bytes(body), end
        offset = end


def _scan(path: Path) -> tuple[int, int]:
    """(bytes of whole good frames, last seq) of one file."""
    good, last = 0, 0
    for header, _body, end in _frames(path):
        good, last = end, header["seq"]
    return good, last


def _record(header: dict[str, Any], body: bytes, tables: bool = True) -> Record:
    n_mids = header.get("mids", 0)
    mids = np.frombuffer(body, np.uint16, count=n_mids) if n_mids else np.empty(0, np.uint16)
    rest = body[2 * n_mids:]
    table = pa.ipc.open_stream(rest).read_all() if rest and tables else None
    return Record(header["seq"], header["kind"], header, table, mids)
