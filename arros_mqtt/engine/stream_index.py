"""The subscriptions of one stream, indexed once (rebuilt when subscriptions change), so a micro-batch
costs per subscription that can match it, not per subscription there is."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from arros_mqtt.engine.equality_skip import EqualityIndex
from arros_mqtt.engine.shared_partial import SharedPartial
from arros_mqtt.engine.subscription import Subscription


@dataclass
class StreamReaders:
    running: list[Subscription] = field(default_factory=list)  # not paused, in the order they were added
    windowed: list[Subscription] = field(default_factory=list)  # paused ones too: their windows still close
    routed: EqualityIndex[Subscription] = field(default_factory=EqualityIndex)
    partial_sharers: set[int] = field(default_factory=set)  # ids: a partial query shared with other running ones
    final_sharers: set[int] = field(default_factory=set)  # ids: a final query shared with other windowed ones

    @classmethod
    def of(cls, subscriptions: Iterable[Subscription], paused: set[str] | dict) -> StreamReaders:
        readers = cls()
        for subscription in subscriptions:
            plan = subscription.plan
            if plan.aggregate is not None and plan.aggregate.window is not None:
                readers.windowed.append(subscription)
            if subscription.name not in paused:
                readers.running.append(subscription)
                if plan.route is not None:
                    readers.routed.add(plan.route, subscription)
        readers.partial_sharers = _sharers(readers.running, lambda shared: shared.key)
        readers.final_sharers = _sharers(readers.windowed,
                                         lambda shared: None if shared.final is None else shared.final_key)
        return readers

    def matching(self, batch: pa.Table) -> set[int] | None:
        """ids of the routed subscriptions whose value occurs in the batch; None when none is routed."""
        return self.routed.matching(batch)

    def shares_partial(self, subscription: Subscription) -> bool:
        """Whether it folds its slice of a partial query run once for several subscriptions."""
        return id(subscription) in self.partial_sharers

    def shares_final(self, subscription: Subscription) -> bool:
        """Whether its closed windows go through one final query with other subscriptions'."""
        return id(subscription) in self.final_sharers


def _sharers(subscriptions: list[Subscription], key: Callable[[SharedPartial], str | None]) -> set[int]:
    """ids of the subscriptions whose shared query (by `key`) at least one other of them has too."""
    keyed = [(id(s), key(s.plan.shared)) for s in subscriptions if s.plan.shared is not None]
    counts = Counter(k for _, k in keyed if k is not None)
    return {ident for ident, k in keyed if k is not None and counts[k] >= 2}
