"""The DataFusion kernels: every step is SQL (incremental.py writes it) run in the engine's session.

They run every query the engine accepts; the pyarrow kernels run the common shapes faster. Each
aggregate registers three tables of its own, named after the subscription: its state (for `merge` and
the groups a batch touched), the rows to finalize, and the partial rows of a batch (running
aggregates: which groups changed). They hold empty tables between steps.
"""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt.engine.incremental import PARTIAL, WINDOW_END, WINDOW_START, IncrementalQuery
from arros_mqtt.engine.kernels import DATAFUSION
from arros_mqtt.engine.sql_session import SqlSession
from arros_mqtt.engine.window_functions import SESSION, WindowSpec


class DataFusionSelect:
    """A per-row query planned over the micro-batch registered as the stream's table."""

    name = DATAFUSION

    def __init__(self, session: SqlSession, stream: str, sql: str, output_schema: pa.Schema) -> None:
        self.session, self.stream, self.sql, self.output_schema = session, stream, sql, output_schema

    def select(self, rows: pa.Table) -> pa.Table:
        self.session.bind(self.stream, rows)
        return self.session.run(self.sql).cast(self.output_schema)


class DataFusionAggregate:
    """partial / merge / final of one aggregate subscription as SQL over its registered tables."""

    name = DATAFUSION

    def __init__(self, session: SqlSession, stream: str, subscription: str, query: IncrementalQuery,
                 window: WindowSpec | None, state_schema: pa.Schema, output_schema: pa.Schema) -> None:
        """Registers the subscription's tables and plans every step once (SqlError before any row flows)."""
        self.session, self.stream, self.query, self.window = session, stream, query, window
        self.state_schema, self.output_schema = state_schema, output_schema
        self.state_table = f"__state_{subscription}"
        self.final_table = f"__final_{subscription}"
        self.changed_table = f"__changed_{subscription}"
        for table in self.tables:
            session.register(table, state_schema.empty_table())
        session.plan(query.final(self.final_table))
        self._merge_sql = query.merge(self.state_table)  # None in RAW mode: state rows are input rows
        if self._merge_sql is not None:
            session.plan(self._merge_sql)
        if window is not None and window.kind == SESSION:
            self._merge_sql = self._session_sql()
            session.plan(self._merge_sql)

    @property
    def tables(self) -> tuple[str, ...]:
        """The DataFusion tables this kernel registers, to deregister when the subscription goes."""
        return (self.state_table, self.final_table, self.changed_table)

    def describe(self) -> str | None:
        return None

    def partial(self, rows: pa.Table) -> pa.Table:
        self.session.bind(self.stream, rows)
        return self.session.collect(self.query.partial, self.state_schema)

    def merge(self, state: pa.Table) -> pa.Table:
        """Compacted by key; sessions: overlapping sessions of a key merged into one (raw rows relabelled)."""
        if self._merge_sql is None:
            return state  # raw rows of windows that are not sessions: nothing combines them
        return self._over_state(self._merge_sql, state)

    def final(self, state: pa.Table) -> pa.Table:
        with self.session.holding(self.final_table, state, self.state_schema):
            result = self.session.run(self.query.final(self.final_table))
        if result.num_rows == 0:
            return self.output_schema.empty_table()
        try:
            return result.cast(self.output_schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            return result

    def touched(self, state: pa.Table, partial: pa.Table) -> pa.Table:
        """The state rows of the groups `partial` has rows for (NULL keys match, as GROUP BY groups them)."""
        keys = self.query.keys
        if not keys:
            return state
        on = " AND ".join(f"s.{k} IS NOT DISTINCT FROM c.{k}" for k in keys)
        changed = (f"SELECT s.* FROM {self.state_table} s JOIN (SELECT DISTINCT {', '.join(keys)} FROM "
                   f"{self.changed_table}) c ON {on}")
        with self.session.holding(self.changed_table, partial, self.state_schema):
            return self._over_state(changed, state)

    def _over_state(self, sql: str, state: pa.Table) -> pa.Table:
        """`sql` over `state` registered as the state table; the result in the state's schema."""
        with self.session.holding(self.state_table, state, self.state_schema):
            return self.session.collect(sql, self.state_schema)

    def _session_sql(self) -> str:
        """Merge overlapping sessions of each key: a row opens a new session unless it starts before the
        furthest end seen so far in its key (ordered by start)."""
        keys = [k for k in self.query.keys if k not in (WINDOW_START, WINDOW_END)]
        by_key = f"PARTITION BY {', '.join(keys)} " if keys else ""
        numbered = (f"SELECT *, row_number() OVER ({by_key}ORDER BY {WINDOW_START}, {WINDOW_END}) AS __rn "
                    f"FROM {self.state_table}")
        previous = (f"SELECT *, max({WINDOW_END}) OVER ({by_key}ORDER BY __rn ROWS BETWEEN UNBOUNDED PRECEDING "
                    "AND 1 PRECEDING) AS __prev FROM numbered")
        grouped = (f"SELECT *, sum(CASE WHEN __prev IS NOT NULL AND {WINDOW_START} < __prev THEN 0 ELSE 1 END) "
                   f"OVER ({by_key}ORDER BY __rn ROWS UNBOUNDED PRECEDING) AS __sid FROM previous")
        head = f"WITH numbered AS ({numbered}), previous AS ({previous}), sessions AS ({grouped}) "
        others = [f for f in self.state_schema.names if f not in (WINDOW_START, WINDOW_END, *keys)]
        session = ", ".join([*keys, "__sid"])
        if self.query.mode != PARTIAL:  # raw rows: relabel each with its session's bounds
            return (head + f"SELECT min({WINDOW_START}) OVER (PARTITION BY {session}) AS {WINDOW_START}, "
                    f"max({WINDOW_END}) OVER (PARTITION BY {session}) AS {WINDOW_END}, "
                    + ", ".join([*keys, *others]) + " FROM sessions")
        select = [f"min({WINDOW_START}) AS {WINDOW_START}", f"max({WINDOW_END}) AS {WINDOW_END}", *keys,
                  *self.query.merge_exprs]
        return head + "SELECT " + ", ".join(select) + f" FROM sessions GROUP BY {session}"
