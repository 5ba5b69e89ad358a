"""The subscriptions of one stream, indexed once (rebuilt when subscriptions change), so a micro-batch
costs per subscription that can match it, not per subscription there is."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from arros_mqtt.engine.equality_skip import EqualityIndex
from arros_mqtt.engine.subscription import Subscription


@dataclass
class StreamReaders:
    running: list[Subscription] = field(default_factory=list)  # not paused, in the order they were added
    windowed: list[Subscription] = field(default_factory=list)  # paused ones too: their windows still close
    routed: EqualityIndex[Subscription] = field(default_factory=EqualityIndex)
    sharing: Counter = field(default_factory=Counter)  # shared partial key -> running subscriptions with it
    closing: Counter = field(default_factory=Counter)  # shared final key -> windowed subscriptions with it
    partial_sharers: set[int] = field(default_factory=set)  # ids of those whose key >= 2 running ones have
    final_sharers: set[int] = field(default_factory=set)  # ids of those whose final key > 1 windowed ones have

    @classmethod
    def of(cls, subscriptions: Iterable[Subscription], paused: set[str] | dict) -> StreamReaders:
        readers = cls()
        for subscription in subscriptions:
            plan = subscription.plan
            if plan.aggregate is not None and plan.aggregate.window is not None:
                readers.windowed.append(subscription)
                if plan.shared is not None and plan.shared.final is not None:
                    readers.closing[plan.shared.final_key] += 1
            if subscription.name in paused:
                continue
            readers.running.append(subscription)
            if plan.shared is not None:
                readers.sharing[plan.shared.key] += 1
            if plan.route is not None:
                readers.routed.add(plan.route, subscription)
        readers._count_sharers()
        return readers

    def _count_sharers(self) -> None:
        for subscription in self.running:
            shared = subscription.plan.shared
            if shared is not None and self.sharing[shared.key] >= 2:
                self.partial_sharers.add(id(subscription))
        for subscription in self.windowed:
            shared = subscription.plan.shared
            if shared is not None and shared.final is not None and self.closing[shared.final_key] > 1:
                self.final_sharers.add(id(subscription))

    def matching(self, batch: pa.Table) -> set[int] | None:
        """ids of the routed subscriptions whose value occurs in the batch; None when none is routed."""
        return self.routed.matching(batch)

    def shares_partial(self, subscription: Subscription) -> bool:
        """Whether it folds its slice of a partial query run once for several subscriptions."""
        return id(subscription) in self.partial_sharers

    def shares_final(self, subscription: Subscription) -> bool:
        """Whether its closed windows go through one final query with other subscriptions'."""
        return id(subscription) in self.final_sharers
