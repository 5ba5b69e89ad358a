"""Subscriptions are read-only SELECTs over exactly one stream; everything else is refused clearly."""

from __future__ import annotations

import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.core.errors import SqlError
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.engine import Engine

CONFIG = parse_config({
    "streams": {
        "telemetry": {"topic": "f/{line}/{machine}", "schema": {"ts": "timestamp[ms]", "temp": "float64"}},
        "other": {"topic": "o/{machine}", "schema": {"v": "int64"}},
    },
})


def add(sql: str, output: str | None = "out/x"):
    from arros_mqtt.config import SubscriptionConfig

    engine = Engine(CONFIG.streams)
    template = OutputTemplate.parse(output) if output else None
    return engine.add(SubscriptionConfig(name="s", sql=sql, output=template))


@pytest.mark.parametrize(("sql", "code", "words"), [
    ("COPY (SELECT * FROM telemetry) TO '/tmp/x.csv'", "forbidden", "COPY is not allowed"),
    ("copy telemetry to '/tmp/x.parquet'", "forbidden", "COPY is not allowed"),
    ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "forbidden", "CREATE is not allowed"),
    ("/* hi */ CREATE TABLE x AS SELECT * FROM telemetry", "forbidden", "CREATE is not allowed"),
    ("DROP TABLE telemetry", "forbidden", "DROP"),
    ("INSERT INTO telemetry SELECT * FROM telemetry", "forbidden", "INSERT"),
    ("SET datafusion.execution.batch_size = 1", "forbidden", "SET"),
    ("EXPLAIN SELECT * FROM telemetry", "forbidden", "EXPLAIN"),
    ("SELECT * FROM '/etc/passwd'", "invalid_sql", "unknown stream or table '/etc/passwd'"),
    ("SELECT * FROM read_csv('/etc/passwd')", "invalid_sql", "read_csv"),
    ("SELECT tmp FROM telemetry", "invalid_sql", "No field named tmp"),
    ("SELEC * FROM telemetry", "invalid_sql", "SELEC"),
    ("SELECT 1", "unknown_stream", "reads no stream"),
    ("SELECT * FROM nowhere", "invalid_sql", "unknown stream or table 'nowhere'"),
    ("SELECT * FROM telemetry JOIN other USING (machine)", "invalid_sql", "stream-to-stream"),
    ("SELECT * FROM telemetry a JOIN telemetry b USING (machine)", "invalid_sql", "stream-to-stream"),
    ("SELECT * FROM telemetry WHERE machine IN (SELECT machine FROM other)", "invalid_sql", "stream-to-stream"),
    ("SELECT * FROM telemetry LIMIT 5", "invalid_sql", "LIMIT"),
    ("SELECT machine, row_number() OVER (PARTITION BY machine) FROM telemetry", "invalid_sql", "OVER"),
    ("SELECT 1; SELECT 2", "invalid_sql", "single SQL statement"),
])
def test_refused(sql, code, words):
    with pytest.raises(SqlError) as info:
        add(sql)
    assert info.value.code == code
    assert words in str(info.value)


def test_output_template_must_name_result_columns():
    with pytest.raises(SqlError, match=r"uses \{line\}, which the query does not return"):
        add("SELECT machine, temp FROM telemetry", output="alerts/{line}")


def test_per_row_shape():
    sub = add("SELECT machine, temp * 2 AS t2, _topic FROM telemetry WHERE temp > 1 ORDER BY temp")
    assert sub.shape.kind == "per_row" and sub.shape.stream == "telemetry"
    assert sub.shape.output_schema.names == ["machine", "t2", "_topic"]
