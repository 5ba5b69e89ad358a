"""Finding the rows (or groups) a query step fails on, so that one bad row does not lose its micro-batch.

A step (a per-row select, an aggregate's partial or final) runs over a whole table; a run-time error
(DataFusion's "Divide by zero", a failing cast) fails all of it. `isolate` reruns the step over halves
of the rows that failed, and halves of those, until the failing rows stand alone: the other rows give
their results, the failing ones come back with the error, to be dead-lettered. Finding f failing rows
among n takes about 2 f log2(n) runs; past `MAX_RUNS` the failing parts left are returned whole (still
dead-lettered, never dropped), so the work per batch stays bounded. An `OverBound` (run_bounds.py) is
not a failing row and is never isolated: the engine pauses the subscription instead. Parts are halved breadth first,
so the parts left then are small and even.

Aggregate state rows are split by group (`groups`), never inside one: a final over part of a group's
rows would publish a partial aggregate that looks complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.engine.incremental import WINDOW_END, WINDOW_START
from arros_mqtt.engine.run_bounds import OverBound, python_error
from arros_mqtt.engine.subscription import Result, Subscription

T = TypeVar("T")
MAX_RUNS = 128  # step runs one failing table may cost (each ~1-5 ms): isolates ~5 failing rows among 10^4
ROW_INDEX = "__row"


@dataclass
class Isolated(Generic[T]):
    """What the step gave for the rows that ran, and the rows that failed with their error."""

    results: list[T] = field(default_factory=list)
    failed: list[tuple[pa.Table, str]] = field(default_factory=list)

    @property
    def failed_rows(self) -> int:
        return sum(rows.num_rows for rows, _ in self.failed)


def error_text(exc: BaseException) -> str:
    """The first line of an error, short enough for a status field and a dead letter."""
    text = python_error(str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def isolate(rows: pa.Table, step: Callable[[pa.Table], T], error: BaseException,
            groups: list[str] | None = None, max_runs: int = MAX_RUNS) -> Isolated[T]:
    """Rerun `step` over parts of `rows` (which it failed on with `error`) to set the failing rows apart.

    `groups`: key columns whose rows must stay together (one group is split no further). Results
    come in row order of the parts that ran."""
    out: Isolated[T] = Isolated()
    units = _group_indices(rows, groups) if groups else None

    def take(lo: int, hi: int) -> pa.Table:
        if units is None:
            return rows.slice(lo, hi - lo)
        return rows.take(pc.list_flatten(units.slice(lo, hi - lo)))

    # breadth first: every failing part is halved before any is halved again, so when the budget runs out
    # the parts left (dead-lettered whole) are small and even, not one large untouched half
    failing = [(0, rows.num_rows if units is None else len(units), error)]
    done: list[tuple[int, T]] = []
    runs = 0
    while failing:
        lo, hi, exc = failing.pop(0)
        if hi - lo <= 1 or runs >= max_runs:
            out.failed.append((take(lo, hi), error_text(exc)))
            continue
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            runs += 1
            try:
                done.append((a, step(take(a, b))))
            except OverBound:
                raise
            except Exception as part_error:
                failing.append((a, b, part_error))
    out.results = [result for _, result in sorted(done, key=lambda item: item[0])]
    return out


def _group_indices(rows: pa.Table, keys: list[str]) -> pa.ListArray:
    """Row indices of each group of `keys`, one list per group (nulls group together, as GROUP BY does)."""
    indexed = rows.select(keys).append_column(ROW_INDEX, pa.array(range(rows.num_rows), pa.int64()))
    grouped = indexed.group_by(keys, use_threads=False).aggregate([(ROW_INDEX, "list")])
    return grouped.column(f"{ROW_INDEX}_list").combine_chunks()


def run_isolating(step: Callable[[pa.Table], T], rows: pa.Table,
                  groups: list[str] | None = None) -> tuple[T | None, Isolated[T] | None]:
    """`step(rows)` and None when it runs; else None and what `isolate` found. A bound (`OverBound`) is
    raised: it is not a failing row, and halving would only run it again."""
    try:
        return step(rows), None
    except OverBound:
        raise
    except Exception as exc:
        return None, isolate(rows, step, exc, groups=groups)


def select_isolating(subscription: Subscription, rows: pa.Table) -> tuple[pa.Table, list[Result]]:
    """A per-row subscription's result rows; the rows it fails on as dead-letter results."""
    out, found = run_isolating(subscription.operator.process, rows)
    if found is None:
        return out, []
    out = pa.concat_tables(found.results) if found.results else subscription.shape.output_schema.empty_table()
    return out, _failed_rows(subscription, found)


def partial_isolating(subscription: Subscription, rows: pa.Table) -> tuple[pa.Table | None, list[Result]]:
    """An aggregate's partial rows of `rows` (None when none ran); the rows it fails on as dead letters, so
    the aggregate is what it would be without them."""
    partial, found = run_isolating(subscription.operator.kernel.partial, rows)
    if found is None:
        return partial, []
    return (pa.concat_tables(found.results) if found.results else None), _failed_rows(subscription, found)


def final_isolating(subscription: Subscription, state: pa.Table) -> tuple[pa.Table | None, list[Result]]:
    """An aggregate's result rows of the state rows `state`; groups whose result fails (a poison group)
    come back as dead-letter results of their keys instead, and the other groups still give theirs."""
    spec = subscription.plan.aggregate
    keys = list(spec.query.keys) if spec is not None else []
    final, found = run_isolating(subscription.operator.kernel.final, state, groups=keys or None)
    if found is None:
        return final, []
    failed = []
    for rows, error in found.failed:
        subscription.stats.rows_failed += _group_count(rows, keys)
        failed.append(Result(subscription, _group_keys(subscription, rows, keys), error=error))
    _count_error(subscription, found)
    return (pa.concat_tables(found.results) if found.results else None), failed


def _failed_rows(subscription: Subscription, found: Isolated) -> list[Result]:
    subscription.stats.rows_failed += found.failed_rows
    _count_error(subscription, found)
    return [Result(subscription, rows, error=error) for rows, error in found.failed]


def _count_error(subscription: Subscription, found: Isolated) -> None:
    stats = subscription.stats
    stats.errors += 1
    if found.failed:
        stats.last_error = found.failed[0][1]


def _group_keys(subscription: Subscription, state: pa.Table, keys: list[str]) -> pa.Table:
    """The distinct groups of state rows, as the query names them: window_start, window_end, then each
    GROUP BY expression as written."""
    if not keys:
        return pa.table({"rows": pa.array([state.num_rows], pa.int64())})
    spec = subscription.plan.aggregate
    names = {WINDOW_START: "window_start", WINDOW_END: "window_end"}
    names.update({f"__k{i}": span.text for i, span in enumerate(spec.query.key_exprs)})
    distinct = state.group_by(keys, use_threads=False).aggregate([])
    return distinct.rename_columns([names.get(k, k) for k in distinct.column_names])


def _group_count(state: pa.Table, keys: list[str]) -> int:
    return state.group_by(keys, use_threads=False).aggregate([]).num_rows if keys else 1
