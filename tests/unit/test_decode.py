"""Decoding micro-batches: fast path per batch, bad payloads isolated with a reason, casting rules."""

from __future__ import annotations

import random

import msgpack
import orjson
import pyarrow as pa
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.decode import CODECS, StreamDecoder

STREAM = parse_config({"streams": {"t": {
    "topic": "f/{line}/{machine}/tel",
    "schema": {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string",
               "pos": "struct<x: float64, y: float64>"},
}}}).streams["t"]
ENCODERS = {"json": orjson.dumps, "msgpack": msgpack.packb}


def decoder(fmt: str) -> StreamDecoder:
    return StreamDecoder(STREAM, CODECS[fmt](STREAM.schema))


def rows(n: int) -> list[dict]:
    rng = random.Random(n)
    return [{"ts": 1_700_000_000_000 + i, "temp": rng.uniform(0, 100), "rpm": rng.randrange(5000), "ok": i % 2 == 0,
             "status": rng.choice(["run", None]), "pos": {"x": 1.0 * i, "y": -1.0}} for i in range(n)]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_batch_roundtrip_with_metadata_columns(fmt):
    sent = rows(2000)
    topics = [f"f/l{i % 3}/m{i % 7}/tel" for i in range(len(sent))]
    table, bad = decoder(fmt).decode(topics, [ENCODERS[fmt](r) for r in sent], list(range(len(sent))))
    assert not bad and table.schema == STREAM.full_schema()
    got = table.to_pylist()
    for i, (row, original) in enumerate(zip(got, sent, strict=True)):
        assert row["temp"] == original["temp"] and row["rpm"] == original["rpm"] and row["pos"] == original["pos"]
        assert row["ts"].timestamp() * 1000 == pytest.approx(original["ts"])
        assert row["line"] == f"l{i % 3}" and row["machine"] == f"m{i % 7}" and row["_topic"] == topics[i]
        assert row["_received_at"].timestamp() * 1000 == pytest.approx(i)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_bad_payloads_are_isolated_in_a_big_batch(fmt):
    sent = rows(1000)
    payloads = [ENCODERS[fmt](r) for r in sent]
    bad_positions = [0, 333, 334, 999]
    for position in bad_positions:
        payloads[position] = b"\xc1garbage" if fmt == "msgpack" else b"{broken"
    table, bad = decoder(fmt).decode(["f/a/b/tel"] * 1000, payloads, [0] * 1000)
    assert sorted(payloads.index(b.payload) for b in bad[:1]) == [0]
    assert len(bad) == 4 and table.num_rows == 996
    good = [r for i, r in enumerate(sent) if i not in bad_positions]
    assert table.column("rpm").to_pylist() == [r["rpm"] for r in good]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_arrays_give_one_row_per_element(fmt):
    sent = rows(10)
    payloads = [ENCODERS[fmt](sent[:4]), ENCODERS[fmt](sent[4]), ENCODERS[fmt](sent[5:])]
    table, bad = decoder(fmt).decode(["f/a/b/tel", "f/c/d/tel", "f/e/f/tel"], payloads, [1, 2, 3])
    assert not bad
    assert table.column("rpm").to_pylist() == [r["rpm"] for r in sent]
    assert table.column("line").to_pylist() == ["a"] * 4 + ["c"] + ["e"] * 5


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize(("value", "field", "expected"), [
    ("12", "rpm", 12), (3.0, "rpm", 3), ("2.5", "temp", 2.5), (7, "status", "7"), ("true", "ok", True),
    ("2024-05-01T10:00:00Z", "ts", "2024-05-01T10:00:00"), (1714557600000, "ts", "2024-05-01T10:00:00"),
])
def test_lossless_casts(fmt, value, field, expected):
    table, bad = decoder(fmt).decode(["f/a/b/tel"], [ENCODERS[fmt]({field: value})], [0])
    assert not bad, bad
    got = table.column(field)[0].as_py()
    assert (got.isoformat() if field == "ts" else got) == expected


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize(("value", "field", "words"), [
    (3.5, "rpm", "'rpm'"), ("hot", "temp", "'temp'"), ("yesterday", "ts", "'ts'"), ({"a": 1}, "status", "'status'"),
    (2**70, "rpm", ""),
])
def test_values_that_do_not_fit_are_rejected_with_the_field(fmt, value, field, words):
    table, bad = decoder(fmt).decode(["f/a/b/tel"], [ENCODERS[fmt]({field: value}) if value != 2**70 else
                                                     b'{"rpm": 1180591620717411303424}'], [0])
    assert table.num_rows == 0 and len(bad) == 1
    assert words in bad[0].error


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("payload", [b"", b"5", b"[1,2]", b"\"text\"", b"null", b"\x00\xff", b"[[]]"])
def test_not_objects(fmt, payload):
    table, bad = decoder(fmt).decode(["f/a/b/tel"], [payload], [0])
    assert table.num_rows == 0 and len(bad) == 1 and bad[0].error


def test_missing_fields_are_null_and_unknown_fields_ignored():
    table, bad = decoder("json").decode(["f/a/b/tel"], [b'{"temp": 1.5, "extra": {"deep": [1, 2]}}'], [0])
    assert not bad
    row = table.to_pylist()[0]
    assert row["temp"] == 1.5 and row["rpm"] is None and row["pos"] is None and "extra" not in row


def test_timestamp_form_can_change_between_batches():
    d = decoder("json")
    for payload in (b'{"ts": 1714557600000}', b'{"ts": "2024-05-01T10:00:00Z"}', b'{"ts": 1714557600000}'):
        table, bad = d.decode(["f/a/b/tel"] * 2, [payload, payload], [0, 0])
        assert not bad and table.column("ts").to_pylist()[0].isoformat() == "2024-05-01T10:00:00"


def test_empty_batch_has_schema():
    table, bad = decoder("json").decode([], [], [])
    assert table.num_rows == 0 and not bad and table.schema == STREAM.full_schema()
    assert isinstance(table, pa.Table)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_big_batches_of_arrays_decode_as_their_payloads_do_one_by_one(fmt):
    """Past the small-batch path (JSON: one list<struct> column, flattened): the same rows, per payload, as
    `read_one`; an empty array or a bad one dead-letters itself alone."""
    sent = rows(3000)
    payloads = [ENCODERS[fmt](sent[i:i + 100]) for i in range(0, 3000, 100)]
    payloads[3] = ENCODERS[fmt]([])
    payloads[7] = ENCODERS[fmt]([{"rpm": 1}, 5])  # not all objects
    payloads[9] = ENCODERS[fmt]([dict(r, ts=f"2024-05-01T10:00:{i:02d}Z") for i, r in enumerate(sent[900:960])])
    topics = [f"f/l{i}/m/tel" for i in range(len(payloads))]
    table, bad = decoder(fmt).decode(topics, payloads, list(range(len(payloads))))
    assert (bad[0].topic, bad[0].error) == ("f/l3/m/tel", "payload holds no rows")
    assert [b.topic for b in bad] == ["f/l3/m/tel", "f/l7/m/tel"]
    one_by_one = decoder(fmt)
    expected = [one_by_one.decode([t], [p], [i])[0] for i, (t, p) in enumerate(zip(topics, payloads, strict=True))]
    assert table.to_pylist() == pa.concat_tables(expected).to_pylist()
    assert table.num_rows == 3000 - 100 - 100 - 100 + 60
