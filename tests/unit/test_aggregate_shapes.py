"""What `arros check` accepts and refuses for aggregate subscriptions, and how each is described."""

from __future__ import annotations

import pytest

from arros_mqtt.core.errors import SqlError
from tests.engine_support import batch, subscribe, telemetry_engine


@pytest.mark.parametrize(("sql", "words"), [
    ("SELECT tumble(_received_at, INTERVAL '10 seconds') AS w, count(*) FROM telemetry GROUP BY w",
     "must be over the stream's event-time column 'ts'"),
    ("SELECT tumble(ts, INTERVAL '1 second') AS a, hop(ts, INTERVAL '1 second', INTERVAL '2 seconds') AS b, "
     "count(*) FROM telemetry GROUP BY a, b", "only one window function"),
    ("SELECT tumble(ts, INTERVAL '10 seconds') AS w, machine FROM telemetry", "use it in GROUP BY"),
    ("SELECT machine, count(*), tumble(ts, INTERVAL '10 seconds') FROM telemetry GROUP BY machine",
     "must be in GROUP BY"),
    ("SELECT hop(ts, INTERVAL '4 seconds', INTERVAL '10 seconds') AS w, count(*) FROM telemetry GROUP BY w",
     "must divide the size"),
    ("SELECT tumble(ts, INTERVAL '1 month') AS w, count(*) FROM telemetry GROUP BY w", "months"),
    ("SELECT tumble(ts, INTERVAL '0 seconds') AS w, count(*) FROM telemetry GROUP BY w", "positive"),
    ("SELECT machine, count(DISTINCT temp) FROM telemetry GROUP BY machine", "would keep every row forever"),
    ("SELECT machine, median(temp) FROM telemetry GROUP BY machine", "use a window"),
    ("SELECT DISTINCT machine FROM telemetry", "SELECT DISTINCT over a stream"),
    ("SELECT m, n FROM (SELECT machine AS m, count(*) AS n FROM telemetry GROUP BY machine) x WHERE n > 1",
     "outermost SELECT"),
    ("SELECT tumble(ts, INTERVAL '1 second') AS w, count(*) FROM telemetry GROUP BY w "
     "UNION ALL SELECT tumble(ts, INTERVAL '1 second') AS w, count(*) FROM telemetry GROUP BY w", "stream-to-stream"),
    ("SELECT tumble(ts, INTERVAL '10 seconds') AS w, * FROM telemetry GROUP BY w, ts, temp, rpm, machine, "
     "_topic, _received_at", "SELECT *"),
])
def test_refused(sql, words):
    with pytest.raises(SqlError) as info:
        subscribe(telemetry_engine(), sql)
    assert words in str(info.value)


def test_late_output_topic_uses_stream_columns():
    sql = "SELECT tumble(ts, INTERVAL '1 second') AS window, count(*) AS n FROM telemetry GROUP BY window"
    subscribe(telemetry_engine(), sql, late_output="late/{machine}")  # a stream column: fine
    with pytest.raises(SqlError, match=r"late_output topic 'late/\{n\}' uses \{n\}, which stream telemetry"):
        subscribe(telemetry_engine(), sql, late_output="late/{n}")


@pytest.mark.parametrize(("sql", "described"), [
    ("SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, avg(temp) FROM telemetry GROUP BY window, machine",
     "windowed (tumble 10s, partial aggregates)"),
    ("SELECT hop(ts, INTERVAL '5 seconds', INTERVAL '1 minute') AS w, count(DISTINCT machine) FROM telemetry "
     "GROUP BY w", "windowed (hop slide 5s size 1m, raw rows until the window closes)"),
    ("SELECT session(ts, INTERVAL '90 seconds') AS w, machine, count(*) FROM telemetry GROUP BY 1, 2",
     "windowed (session gap 90s, partial aggregates)"),
    ("SELECT machine, max(temp) FROM telemetry GROUP BY machine", "running (partial aggregates)"),
    ("SELECT count(*) AS n, avg(temp) FROM telemetry", "running (partial aggregates)"),
    ("SELECT machine, temp FROM telemetry WHERE temp > 1", "per_row"),
])
def test_accepted_and_described(sql, described):
    assert subscribe(telemetry_engine(), sql).describe() == described


def test_braces_and_quoted_names_in_sql_survive_the_rewrite():
    engine = telemetry_engine()
    subscribe(engine, """SELECT machine AS "Machine {state}", count(*) FILTER (WHERE _topic <> '{state}') AS n """
                      """FROM telemetry GROUP BY machine HAVING max(temp) > 0 ORDER BY "Machine {state}" DESC""")
    results = engine.process("telemetry", batch(engine, [1, 2, 3], ["a", "b", "b"], [1.0, 2.0, 3.0]))
    assert results[0].table.to_pylist() == [{"Machine {state}": "b", "n": 2}, {"Machine {state}": "a", "n": 1}]
