"""CSV payloads: lines in schema order or under a header, RFC 4180 quoting, bad messages isolated.

Expected values come from pyarrow's CSV reader run over each message on its own (or from the literal
text), not from the batch decoder under test."""

from __future__ import annotations

import datetime as dt
import io
import random

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.decode import decoder_for

SCHEMA = {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string"}


def stream(**options):
    spec = {"topic": "f/{machine}/csv", "format": "csv", "schema": SCHEMA, **options}
    return parse_config({"streams": {"s": spec}}).streams["s"]


def decode(payloads: list[bytes], **options):
    decoder = decoder_for(stream(**options))
    return decoder.decode([f"f/m{i}/csv" for i in range(len(payloads))], payloads, list(range(len(payloads))))


STATUSES = ["run", "idle", "", '"a, quoted""value"']


def lines(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"{1_764_000_000_000 + i},{rng.uniform(0, 100)!r},{rng.randrange(5000)},{rng.choice(['true', 'false'])},"
            f"{rng.choice(STATUSES)}" for i in range(n)]


def reference(text: str) -> list[dict]:
    """pyarrow's CSV reader over one text, columns named and typed as declared."""
    names = list(SCHEMA)
    types = {"ts": pa.int64(), "temp": pa.float64(), "rpm": pa.int64(), "ok": pa.bool_(), "status": pa.string()}
    table = pa_csv.read_csv(io.BytesIO(text.encode()), read_options=pa_csv.ReadOptions(column_names=names),
                            convert_options=pa_csv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                                  quoted_strings_can_be_null=False))
    rows = table.to_pylist()
    for row in rows:
        row["ts"] = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=row["ts"])
    return rows


def test_one_and_several_lines_per_message_keep_order_and_topic():
    source = lines(3000)
    payloads, expected, machines = [], [], []
    position = 0
    for i, size in enumerate([1, 5, 1, 20, 3] * 60):
        chunk = source[position:position + size]
        position += size
        payloads.append(("\r\n" if i % 7 == 0 else "\n").join(chunk).encode() + (b"\n" if i % 2 else b""))
        expected += reference("\n".join(chunk))
        machines += [f"m{i}"] * size
    table, bad = decode(payloads)
    assert not bad
    got = table.to_pylist()
    assert [{k: r[k] for k in SCHEMA} for r in got] == expected
    assert table.column("machine").to_pylist() == machines


def test_quoting_and_empty_values():
    table, bad = decode([b'1,1.5,2,true,"a,b ""c"""\n2,,,,""\n3,2.5,4,false,'])
    assert not bad
    assert table.select(["temp", "rpm", "ok", "status"]).to_pylist() == [
        {"temp": 1.5, "rpm": 2, "ok": True, "status": 'a,b "c"'},
        {"temp": None, "rpm": None, "ok": None, "status": ""},
        {"temp": 2.5, "rpm": 4, "ok": False, "status": None},
    ]


def test_timestamps_as_epoch_or_iso():
    table, bad = decode([b"1714557600000,1,1,true,a", b"2024-05-01T10:00:00Z,1,1,true,a",
                         b"2024-05-01T12:00:00.250+02:00,1,1,true,a", b"2024-05-01 10:00:00,1,1,true,a"])
    assert not bad
    assert [t.isoformat() for t in table.column("ts").to_pylist()] == [
        "2024-05-01T10:00:00", "2024-05-01T10:00:00", "2024-05-01T10:00:00.250000", "2024-05-01T10:00:00"]


def test_a_quoted_value_spanning_lines_is_one_row():
    table, bad = decode([b'1,1.5,2,true,"line one\nline two"', b"2,1,1,false,x"])
    assert not bad
    assert table.column("status").to_pylist() == ["line one\nline two", "x"]
    assert table.column("machine").to_pylist() == ["m0", "m1"]


@pytest.mark.parametrize(("payload", "words"), [
    (b"1,hot,2,true,x", "field 'temp'"),
    (b"1,1.5,2.5,true,x", "field 'rpm'"),
    (b"1,1.5,2,maybe,x", "field 'ok'"),
    (b"yesterday,1.5,2,true,x", "field 'ts'"),
    (b"1,1.5,2", "Expected 5 columns, got 3"),
    (b"1,1.5,2,true,x,extra", "Expected 5 columns, got 6"),
    (b'1,1.5,2,true,"unterminated', "CSV"),
    (b"", "no rows"),
    (b"\n\r\n", "no rows"),
    (b"\xff\xfe,1,2,true,x", ""),
])
def test_bad_messages_are_isolated_with_the_reason(payload, words):
    good = [line.encode() for line in lines(200)]
    payloads = [*good[:100], payload, *good[100:]]
    table, bad = decode(payloads)
    assert table.num_rows == 200 and len(bad) == 1
    assert bad[0].payload == payload and words in bad[0].error
    assert [{k: r[k] for k in SCHEMA} for r in table.to_pylist()] == reference("\n".join(lines(200)))


def test_header_matches_columns_by_name_in_any_order():
    payloads = [
        b"ts,temp,rpm,ok,status\n1,1.5,2,true,a\n2,2.5,3,false,b\n",
        b"status,rpm,temp\r\nc,4,3.5\r\n",  # a missing declared column is null; CRLF
        b"ts,temp,rpm,ok,status\n3,4.5,5,true,d",
        b"temp,unknown\n5.5,zzz",  # an undeclared column is skipped
    ]
    table, bad = decode(payloads, header=True)
    assert not bad
    assert table.select(["temp", "rpm", "ok", "status", "machine"]).to_pylist() == [
        {"temp": 1.5, "rpm": 2, "ok": True, "status": "a", "machine": "m0"},
        {"temp": 2.5, "rpm": 3, "ok": False, "status": "b", "machine": "m0"},
        {"temp": 3.5, "rpm": 4, "ok": None, "status": "c", "machine": "m1"},
        {"temp": 4.5, "rpm": 5, "ok": True, "status": "d", "machine": "m2"},
        {"temp": 5.5, "rpm": None, "ok": None, "status": None, "machine": "m3"},
    ]


def test_header_errors():
    table, bad = decode([b"\n1,2", b"temp\nhot", b"temp\n1.5"], header=True)
    assert table.column("temp").to_pylist() == [1.5]
    errors = sorted(b.error for b in bad)
    assert "first line must name the columns" in errors[1] and "field 'temp'" in errors[0]
