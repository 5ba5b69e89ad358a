"""Acknowledging QoS 1 messages only once their rows are durable, in the order they arrived.

The MQTT network thread reports each message (`received`) before handing it to the micro-batcher;
the engine thread, once a micro-batch of a stream is in the write-ahead log and synced, reports it
durable (`take` + `durable`). PUBACKs go out in arrival order (MQTT 5 section 4.6 asks for that), so a
message waits for every message received before it, also of other streams.

Duplicates: a broker resends an unacknowledged message with the DUP flag and its original packet
id, after a reconnect or a restart. A DUP message whose id is still pending here, or was made durable
and acknowledged among the last `RECENT` messages (an acknowledgement lost with the connection or the
process), is a copy of one already logged: it is acknowledged again and dropped. Brokers hand out
packet ids in sequence (Mosquitto: previous + 1), so an id comes back for a different message only
after 65,535 others, far more than `RECENT`.

This holds while fewer than `RECENT` logged messages lack a PUBACK the broker received when a crash
comes: the ingress client writes PUBACKs between its reads (`transport/bulk_read.py`), and the log
keeps the records with the last `RECENT` ids (`service/round_driver.py`). When PUBACKs waited for the socket to run
dry, a crash 2 s into draining a backlog left 23k-44k logged messages unacknowledged; Mosquitto
2.0.11 redelivers everything it had sent (more than our Receive Maximum once PUBACKs flow), the
oldest first, so each of those restarts logged all of them again. Remembering more ids is no fix: a
message never logged whose id repeats a remembered one would be dropped, and ids repeat after 65,535.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

import numpy as np

log = logging.getLogger(__name__)
RECENT = 16_384
_MID, _QOS, _LEFT = 0, 1, 2  # an entry: [packet id, QoS, streams whose batch is not yet durable]


class AckLedger:
    def __init__(self, send: Callable[[list[int]], object]) -> None:
        self._send = send  # sends PUBACKs for packet ids, in order (one write for all of them; thread-safe)
        self._lock = threading.Lock()
        self._order: deque[list[int]] = deque()  # every message not yet acknowledged, in arrival order
        self._fifo: dict[str, deque[list[int]]] = {}  # per stream: messages not yet in a micro-batch
        self._pending: dict[int, list[int]] = {}  # QoS 1 packet id -> entry, until acknowledged
        self._recent: OrderedDict[int, None] = OrderedDict()  # packet ids durable and acknowledged lately
        self.duplicates = 0  # DUP messages dropped because their rows were logged already
        self.acked = 0

    @property
    def unacknowledged(self) -> int:
        return len(self._order)

    def remember(self, mids: Iterable[int]) -> None:
        """At start: packet ids of the last messages in the log, whose PUBACK may never have arrived."""
        for mid in mids:
            self._recent[int(mid)] = None
            self._recent.move_to_end(int(mid))
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    def received(self, mid: int, qos: int, dup: bool, streams: tuple[str, ...]) -> bool:
        """Network thread, per message. False: a copy of a logged message (drop it, it is acknowledged)."""
        with self._lock:
            if qos and dup and (mid in self._pending or mid in self._recent):
                self.duplicates += 1
                if self.duplicates in (1, 10, 100) or self.duplicates % 1000 == 0:
                    log.info("%d redelivered copies of logged messages dropped", self.duplicates)
                if mid not in self._pending:
                    self._order.append([mid, qos, 0])
                    self._flush()
                return False
            entry = [mid, qos, len(streams)]
            self._order.append(entry)
            if qos:
                self._pending[mid] = entry
            for stream in streams:
                fifo = self._fifo.get(stream)
                if fifo is None:
                    fifo = self._fifo[stream] = deque()
                fifo.append(entry)
            if not streams:
                self._flush()
            return True

    def take(self, stream: str, count: int) -> list[list[int]]:
        """Engine thread: the next `count` messages of `stream` (one micro-batch, in the batcher's order)."""
        fifo = self._fifo[stream]
        return [fifo.popleft() for _ in range(count)]

    @staticmethod
    def mids(entries: list[list[int]]) -> np.ndarray:
        """Packet ids of the QoS 1 messages among `entries` (what the log records for restarts)."""
        return np.fromiter((e[_MID] for e in entries if e[_QOS]), np.uint16)

    def durable(self, entries: list[list[int]]) -> None:
        """Engine thread: these messages' rows are on disk; acknowledge every message that now may be."""
        with self._lock:
            for entry in entries:
                entry[_LEFT] -= 1
            self._flush()

    def _flush(self) -> None:
        order, pending, recent = self._order, self._pending, self._recent
        mids = []
        while order and order[0][_LEFT] <= 0:
            mid, qos, _ = order.popleft()
            if qos:
                pending.pop(mid, None)
                recent[mid] = None
                recent.move_to_end(mid)
                if len(recent) > RECENT:
                    recent.popitem(last=False)
                mids.append(mid)
        if mids:
            self._send(mids)
            self.acked += len(mids)
