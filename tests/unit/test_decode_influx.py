"""InfluxDB line protocol: Telegraf-style samples, the escaping rules, every field type, bad lines.

The expected values are written out by hand from the line protocol reference, or produced by an
encoder in this file that follows the reference's escaping rules (not by the decoder under test)."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.decode import decoder_for

UTC = dt.UTC


def stream(schema: dict | None, **options):
    spec = {"topic": "tg/{gateway}/metrics", "format": "influx", **options}
    if schema is not None:
        spec["schema"] = schema
    return parse_config({"streams": {"s": spec}}).streams["s"]


def decode(payloads: list[bytes], schema: dict | None, received: int = 1_700_000_000_000, **options):
    decoder = decoder_for(stream(schema, **options))
    n = len(payloads)
    return decoder.decode(["tg/edge-1/metrics"] * n, payloads, [received] * n)


def ns(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC)


TELEGRAF = b"""\
# Telegraf output, several measurements in one message
cpu,cpu=cpu-total,host=edge-1 usage_idle=98.2,usage_user=1.1,usage_system=0.7 1700000000000000000
mem,host=edge-1 active=1234567i,available_percent=75.5,used=900u,swap_on=true 1700000000000000000
disk,device=sda1,fstype=ext4,host=edge-1,mode=rw,path=/ free=1000i,used_percent=12.5 1700000000000000000
system,host=edge-1 uptime_format="10 days,  3:04",n_users=2i,load1=0.5 1700000001000000000
"""


def test_telegraf_sample_every_field_type():
    schema = {"host": "string", "cpu": "string", "usage_idle": "float64", "active": "int64", "used": "uint64",
              "swap_on": "bool", "uptime_format": "string", "n_users": "int64", "path": "string"}
    table, bad = decode([TELEGRAF], schema)
    assert not bad
    rows = table.to_pylist()
    assert [r["_measurement"] for r in rows] == ["cpu", "mem", "disk", "system"]
    assert [r["_time"] for r in rows] == [ns(1_700_000_000)] * 3 + [ns(1_700_000_001)]
    assert rows[0]["cpu"] == "cpu-total" and rows[0]["usage_idle"] == 98.2 and rows[0]["active"] is None
    assert rows[1]["active"] == 1234567 and rows[1]["used"] == 900 and rows[1]["swap_on"] is True
    assert rows[2]["path"] == "/" and rows[2]["cpu"] is None
    assert rows[3]["uptime_format"] == "10 days,  3:04" and rows[3]["n_users"] == 2
    assert all(r["host"] == "edge-1" for r in rows)
    assert table.schema.field("used").type == pa.uint64() and table.schema.field("_time").type == pa.timestamp(
        "ns", tz="UTC")


@pytest.mark.parametrize(("line", "column", "expected"), [
    # examples of the reference's "special characters" rules
    (rb"my\ measurement,t=1 f=1", "_measurement", "my measurement"),
    (rb"my\,measurement,t=1 f=1", "_measurement", "my,measurement"),
    (rb"my=measurement,t=1 f=1", "_measurement", "my=measurement"),
    (rb"my\\measurement,t=1 f=1", "_measurement", "my\\measurement"),
    (rb"my\measurement,t=1 f=1", "_measurement", "my\\measurement"),
    (rb"m,t=tag\ value\,with\=all f=1", "t", "tag value,with=all"),
    (rb"m,t=C:\\dir\\ f=1", "t", "C:\\dir\\"),
    (rb'm,t=1 f="a \"quoted\" string"', "f", 'a "quoted" string'),
    (rb'm,t=1 f="C:\\Program Files\\"', "f", "C:\\Program Files\\"),
    (rb'm,t=1 f="with space, comma=equals"', "f", "with space, comma=equals"),
    (rb'm,t=1 f="literal \n backslash-n"', "f", "literal \\n backslash-n"),
    (rb'm,t=1 f=""', "f", ""),
    ('m,t=1 f="\u00e9\u5b57 unicode"'.encode(), "f", "\u00e9\u5b57 unicode"),
    (rb"m,t=1 f\ key=1,f=2", "f", 2.0),
    (rb"m,t=1 f\=key=1,f=3", "f", 3.0),
])
def test_escaping_rules(line, column, expected):
    table, bad = decode([line], None)
    assert not bad, bad
    assert table.column(column).to_pylist() == [expected]


def test_field_keys_with_escapes_become_their_names():
    table, bad = decode([rb"m,tag\ key=v f\ key=1,f\=key=2i,f\,key=t"], None)
    assert not bad
    row = table.to_pylist()[0]
    assert row["tag key"] == "v" and row["f key"] == 1.0 and row["f=key"] == 2 and row["f,key"] is True


@pytest.mark.parametrize(("value", "kind", "expected"), [
    ("1.5", pa.float64(), 1.5), ("-1e3", pa.float64(), -1000.0), ("1", pa.float64(), 1.0),
    ("12i", pa.int64(), 12), ("-12i", pa.int64(), -12), ("9223372036854775807i", pa.int64(), 2**63 - 1),
    ("18446744073709551615u", pa.uint64(), 2**64 - 1), ("0u", pa.uint64(), 0),
    *[(word, pa.bool_(), True) for word in ("t", "T", "true", "True", "TRUE")],
    *[(word, pa.bool_(), False) for word in ("f", "F", "false", "False", "FALSE")],
    ('"text"', pa.string(), "text"),
])
def test_field_value_syntax_infers_its_type(value, kind, expected):
    table, bad = decode([f"m v={value}".encode()], None)
    assert not bad, bad
    assert table.schema.field("v").type == kind and table.column("v").to_pylist() == [expected]


def test_declared_types_cast_tags_and_fields():
    schema = {"slot": "int32", "temp": "float32", "count": "float64", "label": "string"}
    table, bad = decode([b"m,slot=7,label=x temp=21.5,count=3i"], schema)
    assert not bad
    assert table.select(["slot", "temp", "count", "label"]).to_pylist() == [
        {"slot": 7, "temp": 21.5, "count": 3.0, "label": "x"}]


@pytest.mark.parametrize(("precision", "stamp"), [
    ("s", 1700000000), ("ms", 1700000000123), ("us", 1700000000123456), ("ns", 1700000000123456789),
])
def test_precision(precision, stamp):
    table, bad = decode([f"m v=1 {stamp}\nm v=2 -{stamp}".encode()], {"v": "float64"}, precision=precision)
    assert not bad
    assert table.schema.field("_time").type == pa.timestamp(precision, tz="UTC")
    assert table.column("_time").cast(pa.int64()).to_pylist() == [stamp, -stamp]


def test_a_line_without_timestamp_takes_the_arrival_time():
    table, bad = decode([b"m v=1\nm v=2 1700000000123"], {"v": "float64"}, received=1_700_000_555_000,
                        precision="ms")
    assert not bad
    assert table.column("_time").to_pylist() == [ns(1_700_000_555), ns(1_700_000_000.123)]


def test_measurement_selects_lines_and_skips_the_rest_without_dead_letters():
    payloads = [TELEGRAF, b"mem,host=x used=1u", b"cpu,host=y usage_idle=5"]
    table, bad = decode(payloads, {"host": "string", "usage_idle": "float64"}, measurement="cpu")
    assert not bad
    assert table.select(["_measurement", "host", "usage_idle"]).to_pylist() == [
        {"_measurement": "cpu", "host": "edge-1", "usage_idle": 98.2},
        {"_measurement": "cpu", "host": "y", "usage_idle": 5.0}]


@pytest.mark.parametrize(("line", "words"), [
    (b"cpu", "needs a field set"),
    (b"cpu,host=a", "needs a field set"),
    (b"cpu usage=1 123 extra", "more than"),
    (b"cpu,host usage=1", "tag 'host' is not key=value"),
    (b"cpu,=a usage=1", "empty key or value"),
    (b"cpu,host= usage=1", "empty key or value"),
    (b"cpu usage", "field 'usage' is not key=value"),
    (b"cpu usage=", "empty key or value"),
    (b"cpu usage=1,", "is not key=value"),
    (b"cpu usage=abc", "field 'usage': 'abc' is not a valid value"),
    ("cpu usage=\u0115".encode(), "field 'usage'"),  # its last UTF-8 byte is the string marker's
    (b"cpu usage=1.5i", "field 'usage'"),
    (b"cpu count=-1u", "field 'count'"),
    (b"cpu count=99999999999999999999i", "field 'count'"),
    (b'cpu label="open', "unterminated string"),
    (b'cpu label="a"b', "double quotes"),
    (b'cpu,host="a" usage=1', "double quotes"),
    (b"cpu usage=1 12x", "timestamp '12x'"),
    (b"cpu usage=1 1.5", "timestamp"),
    (b"cpu count=1.5", "field 'count': cannot cast 1.5"),
    (b"\xff\xfe usage=1", "UTF-8"),
    (b"cpu\xef\xb7\x90 usage=1", "noncharacter"),
    (b"# only a comment\n\n", "no rows"),
    (b"", "no rows"),
])
def test_bad_lines_are_dead_letters_with_the_reason(line, words):
    schema = {"host": "string", "usage": "float64", "count": "int64", "label": "string"}
    good = [f"cpu,host=h{i} usage={i}.5,count={i}i,label=\"l{i}\" {1_700_000_000_000_000_000 + i}".encode()
            for i in range(300)]
    table, bad = decode([*good[:150], line, *good[150:]], schema)
    assert len(bad) == 1 and bad[0].payload == line
    assert words in bad[0].error, bad[0].error
    assert table.column("count").to_pylist() == list(range(300))


def test_one_bad_line_makes_its_whole_message_a_dead_letter():
    table, bad = decode([b"m v=1\nm v=oops\nm v=3", b"m v=4"], {"v": "float64"})
    assert table.column("v").to_pylist() == [4.0]
    assert len(bad) == 1 and "oops" in bad[0].error


NAME_ALPHABET = "ab Z,=\\'#é字\t"  # double quotes in names are refused (see the codec's docs)
ALPHABET = NAME_ALPHABET + '"'


def escape_name(text: str, specials: str) -> str:
    text = text.replace("\\", "\\\\")
    for char in specials:
        text = text.replace(char, "\\" + char)
    return text


def line_of(row: dict) -> str:
    """The reference's escaping rules, written independently of the decoder."""
    head = escape_name(row["m"], ", ") + "".join(
        f",{escape_name(k, ',= ')}={escape_name(v, ',= ')}" for k, v in row["tags"].items())
    values = []
    for key, value in row["fields"].items():
        if isinstance(value, bool):
            text = "true" if value else "F"
        elif isinstance(value, int):
            text = f"{value}i"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        values.append(f"{escape_name(key, ',= ')}={text}")
    return f"{head} {','.join(values)} {row['ts']}"


def random_text(rng: random.Random, first_not: str = "") -> str:
    text = "".join(rng.choice(NAME_ALPHABET) for _ in range(rng.randrange(1, 8)))
    return "x" + text if text[0] in first_not + " \t" or text[-1] in " \t" else text


def test_random_names_and_values_roundtrip_through_the_escaping_rules():
    rng = random.Random(11)
    rows = []
    for i in range(400):
        rows.append({
            "m": random_text(rng, first_not="#"),
            "tags": {"tag": random_text(rng)},
            "fields": {"s": "".join(rng.choice(ALPHABET + " ") for _ in range(rng.randrange(0, 10))),
                       "f": rng.uniform(-1e6, 1e6), "i": rng.randrange(-2**63, 2**63), "b": rng.random() > 0.5},
            "ts": 1_700_000_000_000_000_000 + i,
        })
    payloads = [line_of(r).encode() for r in rows[:200]]
    payloads += ["\n".join(line_of(r) for r in rows[i:i + 10]).encode() for i in range(200, 400, 10)]
    table, bad = decode(payloads, {"tag": "string", "s": "string", "f": "float64", "i": "int64", "b": "bool"})
    assert not bad, bad[:2]
    assert table.column("_time").cast(pa.int64()).to_pylist() == [r["ts"] for r in rows]
    got = table.drop_columns(["_time"]).to_pylist()
    assert [r["_measurement"] for r in got] == [r["m"] for r in rows]
    assert [r["tag"] for r in got] == [r["tags"]["tag"] for r in rows]
    for name in ("s", "f", "i", "b"):
        assert [r[name] for r in got] == [r["fields"][name] for r in rows], name
