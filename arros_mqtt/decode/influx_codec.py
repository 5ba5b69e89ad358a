"""InfluxDB line protocol: `measurement[,tag=v...] field=v[,field=v...] [timestamp]`, lines per message.

Parsed per micro-batch with Arrow string kernels, never line by line in Python:

1. payloads are split into lines (blank lines and `# comments` dropped, `\\r` trimmed); single spaces
   separate the sections (runs of spaces count as one);
2. escapes become one-character placeholders (`\\\\`, `\\"`, then outside string values `\\,` `\\=` `\\ `),
   and each `"string value"` is cut out (split on `"`, odd pieces) and replaced by a marker, so what is
   left splits plainly on spaces, commas and equals signs;
3. tags and fields become one long list of (line, key, value) entries; entries are grouped by key
   (dictionary-encoded, sorted once) and each column's values are parsed by their syntax (`"..."`
   string, `t`/`false`... bool, `12i` int64, `12u` uint64, else float64), cast to the column's type and
   scattered to their lines with one `take`.

Rows carry `_measurement`, `_time` (`timestamp[precision, UTC]`; the arrival time when a line has no
timestamp) and one column per declared tag or field (a tag's string is cast to the declared type too).
With `measurement` set, lines of other measurements are skipped, not dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import INFLUX_COLUMNS, StreamConfig
from arros_mqtt.core.errors import DecodeError
from arros_mqtt.decode.codec import Codec
from arros_mqtt.decode.inference import settle

# Unicode noncharacters stand for escaped characters while splitting; input holding them is refused.
BACKSLASH, QUOTE, COMMA, EQUALS, SPACE, STRING = (chr(c) for c in range(0xFDD0, 0xFDD6))
_PLACEHOLDER = "[\ufdd0-\ufdd5]"
_TRUE = pa.array(["t", "T", "true", "True", "TRUE"])
_BOOLS = pa.array(["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"])
# Module-level scalars: pyarrow converts a Python literal per compute call at ~40 us (it tries an import).
_STRING_MARKER, _I, _U = pa.scalar(STRING), pa.scalar("i"), pa.scalar("u")
FLOAT, INT, UINT, BOOL, TEXT = range(5)  # value kinds as written
_BOOL_ENDINGS = np.frombuffer(b"eEtTfF", dtype=np.uint8)
_MARKER_LAST_BYTE = STRING.encode()[-1]
_TYPES = (pa.float64(), pa.int64(), pa.uint64(), pa.bool_(), pa.string())


class InfluxCodec(Codec):
    fill_from_received = "_time"

    def __init__(self, schema: pa.Schema, *, measurement: str | None = None, track_extras: bool = False) -> None:
        super().__init__(schema, track_extras=track_extras)
        self.measurement = None if measurement is None else pa.scalar(measurement)
        self.empty_is_error = measurement is None  # a message of other measurements only is fine
        self._time_type = schema.field("_time").type
        self._columns = [f for f in schema if f.name not in INFLUX_COLUMNS]

    @classmethod
    def for_stream(cls, stream: StreamConfig, schema: pa.Schema | None = None, *, track_extras: bool = False) -> Codec:
        return cls(schema if schema is not None else stream.schema, measurement=stream.measurement,
                   track_extras=track_extras)

    @classmethod
    def infer_schema(cls, payloads: list[bytes], stream: StreamConfig) -> pa.Schema | None:
        """Tags as strings, fields typed by their syntax (mixed number kinds: float64); first-seen order."""
        selected = None if stream.measurement is None else pa.scalar(stream.measurement)
        try:
            parts = [Points.parse(payloads, selected)]
        except (DecodeError, pa.ArrowException):
            parts = []
            for payload in payloads:
                try:
                    parts.append(Points.parse([payload], selected))
                except (DecodeError, pa.ArrowException):
                    continue
        kinds: dict[str, list[int]] = {}
        for points in parts:
            for key, kind in points.key_kinds():
                kinds.setdefault(key, [])
                if kind not in kinds[key]:
                    kinds[key].append(kind)
        if not kinds:
            return None
        fields = [pa.field("_measurement", pa.string()), pa.field("_time", pa.timestamp(stream.precision, tz="UTC"))]
        fields += [pa.field(key, _unified(found)) for key, found in kinds.items() if key not in INFLUX_COLUMNS]
        return settle(pa.schema(fields), stream, widen=False)

    def read_batch(self, payloads: list[bytes]) -> tuple[pa.Table, list[int] | None]:
        points = Points.parse(payloads, self.measurement)
        return self._table(points), points.counts.tolist()

    def read_one(self, payload: bytes) -> pa.Table:
        return self._table(Points.parse([payload], self.measurement))

    def _table(self, points: Points) -> pa.Table:
        columns = [points.measurements, points.times(self._time_type)]
        for field in self._columns:
            columns.append(points.column(field.name, field.type))
        table = pa.Table.from_arrays(columns, schema=self.schema)
        if self.track_extras:
            self.extra_fields.update(points.key_counts(exclude=set(self.schema.names)))
        return table


@dataclass
class Points:
    """Parsed lines in long form: one entry per tag and field, grouped by key."""

    lines: int
    counts: np.ndarray  # lines per payload
    measurements: pa.Array
    timestamps: pa.Array  # raw text, null where a line has none
    keys: pa.DictionaryArray  # per entry
    values: pa.Array  # per entry: tag value, or field value as written (strings as the marker)
    entry_line: np.ndarray
    is_tag: np.ndarray
    strings: pa.Array  # the contents of "..." values, in entry order
    _codes: np.ndarray | None = None

    @classmethod
    def parse(cls, payloads: list[bytes], measurement: pa.StringScalar | None) -> Points:
        return _Parser(payloads, measurement).points()

    def key_counts(self, exclude: set[str]) -> dict[str, int]:
        counts = np.bincount(self.keys.indices.to_numpy(), minlength=len(self.keys.dictionary))
        return {key: int(n) for key, n in zip(self.keys.dictionary.to_pylist(), counts, strict=True)
                if key not in exclude and n}

    def key_kinds(self) -> list[tuple[str, int]]:
        """(key, value kind) pairs in first-seen order, tags first."""
        found = []
        indices = self.keys.indices.to_numpy()
        names = self.keys.dictionary.to_pylist()
        for tag_pass in (True, False):
            for code in dict.fromkeys(indices[self.is_tag == tag_pass].tolist()):
                selected = np.flatnonzero((indices == code) & (self.is_tag == tag_pass))
                kinds = [TEXT] if tag_pass else list(dict.fromkeys(_kinds(self.values.take(selected)).tolist()))
                found += [(names[code], kind) for kind in kinds]
        return found

    def times(self, kind: pa.DataType) -> pa.Array:
        try:
            return pc.cast(pc.cast(self.timestamps, pa.int64()), kind)
        except pa.ArrowInvalid:
            bad = pc.filter(self.timestamps, pc.invert(pc.match_substring_regex(self.timestamps, r"^-?\d{1,19}$")))
            raise DecodeError(f"timestamp {bad[0].as_py() if len(bad) else '?'!r} is not an integer "
                              f"(in {kind.unit} since the epoch)") from None

    def column(self, name: str, kind: pa.DataType) -> pa.Array:
        """The entries keyed `name` as one column of `kind`, a row per line (null where absent)."""
        code = self.keys.dictionary.index(name).as_py()
        if code < 0:
            return pa.nulls(self.lines, kind)
        selected = np.flatnonzero(self.key_codes == code)
        tags = self.is_tag[selected]
        lines_of, parts = [], []
        if tags.any():
            chosen = selected[tags]
            lines_of.append(self.entry_line[chosen])
            parts.append(_cast(self.values.take(chosen), kind, name))
        if not tags.all():
            chosen = selected[~tags]
            kinds = _kinds(self.values.take(chosen))
            for found in np.unique(kinds).tolist():
                subset = chosen[kinds == found]
                lines_of.append(self.entry_line[subset])
                parts.append(_cast(self._typed(subset, found, name), kind, name))
        values = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        position = np.full(self.lines, -1, dtype=np.int64)
        position[np.concatenate(lines_of)] = np.arange(len(values))  # a key given twice in a line: the last
        return values.take(pa.array(position, mask=position < 0))

    @property
    def key_codes(self) -> np.ndarray:
        if self._codes is None:
            self._codes = self.keys.indices.to_numpy()
        return self._codes

    def _typed(self, entries: np.ndarray, kind: int, name: str) -> pa.Array:
        raw = self.values.take(entries)
        if kind == TEXT:
            string_index = np.cumsum(_is_string_marker(self.values)) - 1
            return self.strings.take(pa.array(string_index[entries]))
        if kind == BOOL:
            return pc.is_in(raw, _TRUE)
        try:
            if kind in (INT, UINT):
                return pc.cast(pc.utf8_slice_codeunits(raw, 0, -1), _TYPES[kind])
            return pc.cast(raw, pa.float64())
        except pa.ArrowInvalid:
            raise DecodeError(f"field {name!r}: {_first_failing(raw, kind)!r} is not a valid value (floats as 1.5, "
                              "integers as 12i, unsigned as 12u, strings in double quotes, booleans as t or "
                              "false)") from None


class _Parser:
    """Turns payloads into `Points`; every malformed line is a DecodeError naming the line."""

    def __init__(self, payloads: list[bytes], measurement: pa.StringScalar | None) -> None:
        self.payloads = payloads
        self.measurement = measurement

    def points(self) -> Points:
        try:
            text = pa.array(self.payloads, pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:
            raise DecodeError("line protocol must be UTF-8 text") from None
        per_payload = pc.split_pattern(text, "\n")
        lines = pc.utf8_trim(pc.list_flatten(per_payload), " \t\r")
        parent = pc.list_parent_indices(per_payload).to_numpy()
        keep = (_lengths(lines) > 0) & ~_bools(pc.starts_with(lines, "#"))
        self.lines = lines.filter(pa.array(keep))
        parent = parent[keep]
        raw = _bytes_of(text)  # one scan of the whole batch tells which slower steps are needed at all
        if np.any((raw[:-1] == 0xEF) & (raw[1:] == 0xB7)):  # how U+FDD0..U+FDD5 start in UTF-8
            self._check(~_bools(pc.match_substring_regex(self.lines, _PLACEHOLDER)), "holds a Unicode noncharacter")
        escaped = bool(np.any(raw == ord("\\")))
        quoted = bool(np.any(raw == ord('"')))
        work = self.lines
        if escaped:
            work = pc.replace_substring(pc.replace_substring(work, "\\\\", BACKSLASH), '\\"', QUOTE)
        strings, string_line = pa.array([], pa.string()), np.zeros(0, dtype=np.int64)
        if quoted:
            work, strings, string_line = self._cut_strings(work)
        if escaped:
            for sequence, placeholder in (("\\,", COMMA), ("\\=", EQUALS), ("\\ ", SPACE)):
                work = pc.replace_substring(work, sequence, placeholder)
        if np.any((raw[:-1] == 0x20) & (raw[1:] == 0x20)):  # runs of spaces between sections count as one
            work = pc.replace_substring_regex(work, "  +", " ")
        sections = pc.split_pattern(work, " ")
        count = _lengths(sections)
        self._check(count >= 2, "needs a field set after the measurement and tags")
        self._check(count <= 3, "has more than measurement+tags, fields and timestamp "
                    "(a space in a name or tag must be escaped as '\\ ')")
        starts = sections.offsets.to_numpy()[:-1]
        flat = pc.list_flatten(sections)
        heads = pc.split_pattern(flat.take(pa.array(starts)), ",")
        measurements = _unescaped(pc.list_element(heads, 0), escaped)
        self._check(_lengths(measurements) > 0, "has an empty measurement")
        fields = flat.take(pa.array(starts + 1))
        timestamps = flat.take(pa.array(np.where(count < 3, 0, starts + 2), mask=count < 3))
        if self.measurement is not None:
            selected = pc.fill_null(pc.equal(measurements, self.measurement), False)
            measurements, fields, timestamps, heads = (a.filter(selected) for a in (measurements, fields, timestamps,
                                                                                    heads))
            kept = selected.to_numpy(zero_copy_only=False)
            self.lines, parent = self.lines.filter(selected), parent[kept]
            if quoted:
                strings, string_line = self._strings_of(kept, strings, string_line)
        n = len(measurements)
        tag_keys, tag_values, tag_line = self._pairs(pc.list_slice(heads, 1), "tag", escaped)
        field_keys, field_values, field_line = self._pairs(pc.split_pattern(fields, ","), "field", escaped)
        self._check_markers(tag_keys, tag_values, field_keys, field_values, len(strings))
        keys = pa.concat_arrays([tag_keys, field_keys]).dictionary_encode()
        return Points(
            lines=n, counts=np.bincount(parent, minlength=len(self.payloads)), measurements=measurements,
            timestamps=timestamps, keys=keys, values=pa.concat_arrays([tag_values, field_values]),
            entry_line=np.concatenate([tag_line, field_line]),
            is_tag=np.concatenate([np.ones(len(tag_keys), bool), np.zeros(len(field_keys), bool)]), strings=strings,
        )

    def _cut_strings(self, work: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
        """Each "..." becomes the STRING marker; the contents come back in order, with their line."""
        pieces = pc.split_pattern(work, '"')
        self._check(_lengths(pieces) % 2 == 1, "has an unterminated string")
        flat = pc.list_flatten(pieces)
        parent = pc.list_parent_indices(pieces).to_numpy()
        position = np.arange(len(flat)) - pieces.offsets.to_numpy()[parent]
        inside = (position % 2) == 1
        contents = flat.filter(pa.array(inside))
        contents = pc.replace_substring(pc.replace_substring(contents, BACKSLASH, "\\"), QUOTE, '"')
        marked = pc.if_else(pa.array(inside), _STRING_MARKER, flat)
        rejoined = pc.binary_join(pa.ListArray.from_arrays(pieces.offsets, marked), "")
        return rejoined, contents, parent[inside]

    @staticmethod
    def _strings_of(kept: np.ndarray, strings: pa.Array, string_line: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        renumber = np.cumsum(kept) - 1
        mask = kept[string_line]
        return strings.filter(pa.array(mask)), renumber[string_line[mask]]

    def _pairs(self, lists: pa.ListArray, what: str, escaped: bool) -> tuple[pa.Array, pa.Array, np.ndarray]:
        """`key=value` items of each line -> keys, values and the line each came from."""
        items = pc.list_flatten(lists)
        line = pc.list_parent_indices(lists).to_numpy()
        parts = pc.split_pattern(items, "=")
        good = _lengths(parts) == 2
        if not good.all():
            bad = items.filter(pa.array(~good))[0].as_py()
            raise DecodeError(f"{what} {bad!r} is not key=value (escape ',', '=' and ' ' in names as '\\,' '\\=' "
                              f"'\\ ')")
        halves = pc.list_flatten(parts)  # key, value, key, value, ...
        if not (_lengths(halves) > 0).all():
            empty = (_lengths(halves) == 0).reshape(-1, 2).any(axis=1)
            raise DecodeError(f"{what} {items.filter(pa.array(empty))[0].as_py()!r} has an empty key or value")
        keys = halves.take(pa.array(np.arange(0, len(halves), 2)))
        values = halves.take(pa.array(np.arange(1, len(halves), 2)))
        keys = _unescaped(keys, escaped)
        return keys, _unescaped(values, escaped) if what == "tag" else values, line

    def _check_markers(self, tag_keys, tag_values, field_keys, field_values, string_count: int) -> None:
        if string_count == 0:
            return
        exact = int(_is_string_marker(field_values).sum())
        anywhere = sum(pc.sum(pc.count_substring(a, STRING)).as_py() or 0
                       for a in (tag_keys, tag_values, field_keys, field_values))
        if exact != string_count or anywhere != string_count:
            raise DecodeError('double quotes belong around string field values only (field="text")')

    def _check(self, ok: np.ndarray, what: str) -> None:
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise DecodeError(f"line {self.lines[bad].as_py()[:120]!r} {what}")


def _unescaped(values: pa.Array, escaped: bool) -> pa.Array:
    if not escaped:
        return values
    for placeholder, text in ((COMMA, ","), (EQUALS, "="), (SPACE, " "), (BACKSLASH, "\\"), (QUOTE, '\\"')):
        values = pc.replace_substring(values, placeholder, text)
    return values


def _bytes_of(strings: pa.Array) -> np.ndarray:
    """The characters of a string array as one numpy byte view (no copy)."""
    _, offsets, data = strings.buffers()
    if data is None or len(strings) == 0:
        return np.zeros(0, dtype=np.uint8)
    bounds = np.frombuffer(offsets, dtype=np.int32)[[strings.offset, strings.offset + len(strings)]]
    return np.frombuffer(data, dtype=np.uint8)[bounds[0]:bounds[1]]


def _lengths(values: pa.Array) -> np.ndarray:
    """Characters per string, or items per list, as numpy (nulls count 0)."""
    kind = values.type
    lengths = pc.list_value_length(values) if pa.types.is_list(kind) else pc.utf8_length(values)
    return lengths.fill_null(0).to_numpy()


def _bools(values: pa.Array) -> np.ndarray:
    return values.fill_null(False).to_numpy(zero_copy_only=False)


def _is_string_marker(values: pa.Array) -> np.ndarray:
    return _bools(pc.equal(values, _STRING_MARKER))


def _kinds(raw: pa.Array) -> np.ndarray:
    """The kind of each field value as written (FLOAT, INT, UINT, BOOL or TEXT), from its last byte."""
    last = _last_bytes(raw)
    kinds = np.full(len(raw), FLOAT, dtype=np.int8)
    kinds[last == ord("i")] = INT
    kinds[last == ord("u")] = UINT
    maybe_bool = np.isin(last, _BOOL_ENDINGS)
    if maybe_bool.any():
        kinds[maybe_bool & _bools(pc.is_in(raw, _BOOLS))] = BOOL
    maybe_text = last == _MARKER_LAST_BYTE  # other characters end with this byte too (e.g. U+0115)
    if maybe_text.any():
        kinds[maybe_text & _is_string_marker(raw)] = TEXT
    return kinds


def _last_bytes(strings: pa.Array) -> np.ndarray:
    """The last byte of each (non-empty) string."""
    _, offsets, data = strings.buffers()
    if len(strings) == 0:
        return np.zeros(0, dtype=np.uint8)
    ends = np.frombuffer(offsets, dtype=np.int32)[strings.offset + 1:strings.offset + len(strings) + 1]
    return np.frombuffer(data, dtype=np.uint8)[ends - 1]


def _cast(values: pa.Array, kind: pa.DataType, name: str) -> pa.Array:
    try:
        return pc.cast(values, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DecodeError(f"field {name!r}: cannot cast {_first_failing(values, kind)!r} ({values.type}) "
                          f"to {kind}") from None


def _first_failing(values: pa.Array, kind: int | pa.DataType) -> object:
    """For the error message only: the first value that does not convert."""
    target = _TYPES[kind] if isinstance(kind, int) else kind
    for value in values[:1000]:
        text = value.as_py()
        if text is None:
            continue
        if kind in (INT, UINT):
            text = text[:-1]
        try:
            pc.cast(pa.array([text]), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return value.as_py()
    return values[0].as_py() if len(values) else None


def _unified(kinds: list[int]) -> pa.DataType:
    if len(kinds) > 1 and set(kinds) <= {INT, UINT, FLOAT}:
        return pa.float64()
    return _TYPES[kinds[0]]
