"""The limits of `[control]`: how many subscriptions, how much state and output each may have.

Creating beyond `max_subscriptions` is refused (`limit_exceeded`). At run time a subscription that
would publish more than `max_output_rate` messages within one second (the result that would go past
it is not published), or holds more than `max_state_bytes` of state, is paused with the reason in
its status: the rest of the service keeps running. The state limit is per subscription, so one device
(many keys, or many raw rows) can pause an aggregate for every device: the reason names the groups
holding the most state rows, for the operator to act on. All methods run on the engine thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from arros_mqtt.config import ControlConfig
from arros_mqtt.control.protocol import ControlError
from arros_mqtt.engine import Result, Subscription

Pause = Callable[[str, str], None]  # (subscription name, reason)
RATE_WINDOW_SECONDS = 1.0


class Limits:
    def __init__(self, config: ControlConfig, pause: Pause) -> None:
        self.config = config
        self._pause = pause
        self._windows: dict[str, _Window] = {}

    def check_create(self, live: int) -> None:
        limit = self.config.max_subscriptions
        if limit and live >= limit:
            raise ControlError("limit_exceeded", f"{live} subscriptions exist; [control] max_subscriptions = "
                               f"{limit}: drop one first")

    def admit(self, result: Result) -> bool:
        """Before a result is published: False, and the subscription paused, when its messages would
        take this second's count past `max_output_rate`."""
        rate = self.config.max_output_rate
        if not rate:
            return True
        name = result.subscription.name
        window = self._windows.setdefault(name, _Window())
        messages = _messages(result)
        if not window.admit(messages, rate, time.monotonic()):
            self._pause(name, f"output rate limit: {window.messages + messages} messages within "
                        f"{RATE_WINDOW_SECONDS:g} s would exceed [control] max_output_rate = {rate}")
            return False
        return True

    def check_state(self, subscriptions: Iterable[Subscription], paused: dict[str, str]) -> None:
        limit = self.config.max_state_bytes
        if not limit:
            return
        for subscription in subscriptions:
            size = subscription.stats.state_bytes
            if size > limit and subscription.name not in paused:
                self._pause(subscription.name, f"state limit: {size} bytes of state exceed [control] "
                            f"max_state_bytes = {limit}{_heaviest(subscription)}")

    def forget(self, name: str) -> None:
        """A resumed, replaced or dropped subscription starts a fresh rate window."""
        self._windows.pop(name, None)


class _Window:
    """Messages published in the current one-second window."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.messages = 0

    def admit(self, messages: int, rate: int, now: float) -> bool:
        if now - self.start >= RATE_WINDOW_SECONDS:
            self.start, self.messages = now, 0
        if self.messages + messages > rate:
            return False
        self.messages += messages
        return True


def _heaviest(subscription: Subscription) -> str:
    """Which groups hold the most state (one device can fill it for everyone): `; most state rows: ...`."""
    try:
        groups = subscription.heaviest_groups()
    except Exception:  # the reason is still given without it
        return ""
    if not groups:
        return ""
    total = max(subscription.stats.state_rows, 1)
    shown = ", ".join(f"{' '.join(f'{k}={v!r}' for k, v in key.items())} ({rows} rows, {rows * 100 // total}%)"
                      for key, rows in groups)
    return f"; most state rows: {shown}"


def _messages(result: Result) -> int:
    """How many MQTT messages publishing `result` takes: one per row, or one per topic with batch = true."""
    config = result.subscription.config
    if config.output is None:
        return 0
    if not config.batch:
        return result.table.num_rows
    topics = config.output.render(result.table)
    return 1 if isinstance(topics, str) else len(set(topics))
