"""Results waiting for the broker: bounded in memory, spilled to disk past that, published in order.

The engine thread `put`s each outgoing message, tagged with the log position (seq) that produced it.
`pump` hands messages to the MQTT client while it is connected and fewer than `max_inflight` QoS 1
messages await their PUBACK (and fewer than `max_inflight` QoS 0 ones wait in paho's queue for the
socket: without that bound a QoS 0 flood went straight into paho's memory); it runs after every `put`,
on every PUBACK and on every (re)connect, so a broker outage just lets the queue grow: past
`memory_bytes` new messages go to files under `spill_dir`, which are read back in order once the
broker is back; past `spill_bytes` the queue is `full` and the engine waits (backpressure on
ingestion). Spill files are not synced: after a crash the write-ahead log, not the spill, is what
brings unconfirmed results back.

`confirmed(position)` is the log position up to which every output was acknowledged by the broker
(QoS 1 PUBACK, QoS 2 PUBCOMP) or written to its socket (QoS 0): outputs of records at or before it are
never published again.

With an output journal (`journal`, the log on), QoS 2 messages go exactly once: `pump` records each
contiguous run of them in the journal with one fsync before handing them to the client (an
`ExactlyOnceClient`, with the packet ids chosen here), and they are pumped at the end of the engine's
round (`Journal.after_round`), not on every `put`, so a round's results share that fsync. At start,
`recover` re-queues the journal's pending messages in the client and, during the log replay,
regenerated QoS 2 outputs the broker was already sent are skipped (matched by (seq, topic, payload)).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt

from arros_mqtt.egress.output_journal import Entry, OutputJournal
from arros_mqtt.egress.packet_size import MQTT_MAX_PACKET, publish_packet_size
from arros_mqtt.transport.paho_internals import out_message_lock

log = logging.getLogger(__name__)
SPILL_FILE_BYTES = 16 * 1024 * 1024
QOS2_GROUP = 100  # QoS 2 messages journaled per fsync when a PUBCOMP frees a slot in flight
MESSAGE_OVERHEAD = 64  # bytes counted per message besides topic and payload
MARK_SECONDS = 0.01  # the queue notes when its messages were put at this resolution (for `lag_seconds`)
MAX_MARKS = 1000  # notes kept before the ones of messages already handed over are dropped
_RECORD = struct.Struct("<QBBHI")  # seq, qos, retain, topic length, payload length
Message = tuple[int, str, bytes, int, bool]  # (seq, topic, payload, qos, retain)


def _size(message: Message) -> int:
    return len(message[1]) + len(message[2]) + MESSAGE_OVERHEAD


class SpillFiles:
    """A FIFO of messages in files of `SPILL_FILE_BYTES`, written at the back and read from the front."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.bytes = 0
        self.messages = 0
        self._files: deque[Path] = deque()
        self._writer = None
        self._written = 0
        self._number = 0
        self._reader = None
        self._cleared = False


    def push(self, message: Message) -> None:
        seq, topic, payload, qos, retain = message
        if self._writer is None or self._written >= SPILL_FILE_BYTES:
            if self._writer is not None:
                self._writer.close()  # the reader has a handle of its own
            if not self._cleared:  # a previous run's spill is regenerated from the log, never read
                shutil.rmtree(self.dir, ignore_errors=True)
                self._cleared = True
            self.dir.mkdir(parents=True, exist_ok=True)
            self._number += 1
            path = self.dir / f"spill-{self._number:08d}.bin"
            self._writer = open(path, "wb")  # noqa: SIM115 - kept open across calls
            self._written = 0
            self._files.append(path)
        encoded = topic.encode()
        self._writer.write(_RECORD.pack(seq, qos, int(retain), len(encoded), len(payload)) + encoded + payload)
        self._written += _RECORD.size + len(encoded) + len(payload)
        self.bytes += _size(message)
        self.messages += 1

    def pop(self, limit: int) -> list[Message]:
        """Up to `limit` messages from the front."""
        out: list[Message] = []
        if self._writer is not None and not self._writer.closed:
            self._writer.flush()
        while len(out) < limit and self.messages:
            if self._reader is None:
                self._reader = open(self._files[0], "rb")  # noqa: SIM115 - kept open across calls
            head = self._reader.read(_RECORD.size)
            if len(head) < _RECORD.size:  # this file is done (it is not the one being written)
                self._reader.close()
                self._reader = None
                self._files.popleft().unlink(missing_ok=True)
                continue
            seq, qos, retain, topic_len, payload_len = _RECORD.unpack(head)
            topic = self._reader.read(topic_len).decode()
            message = (seq, topic, self._reader.read(payload_len), qos, bool(retain))
            self.bytes -= _size(message)
            self.messages -= 1
            out.append(message)
        if not self.messages:
            self._reset()
        return out

    def _reset(self) -> None:
        for handle in (self._reader, self._writer):
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
        for path in self._files:
            path.unlink(missing_ok=True)
        self._files.clear()
        self._reader = self._writer = None
        self._written = 0
        self.bytes = 0


class OutputQueue:
    def __init__(self, client: mqtt.Client, memory_bytes: int, spill_bytes: int, spill_dir: Path | None,
                 max_inflight: int = 1000, journal: OutputJournal | None = None) -> None:
        self.client = client
        self.memory_bytes = memory_bytes
        self.spill_bytes = spill_bytes
        self.max_inflight = max_inflight
        self.spill = SpillFiles(spill_dir) if spill_dir is not None else None
        self.journal = journal  # QoS 2 exactly once (the client is then an ExactlyOnceClient)
        self.journal_error: str | None = None  # why QoS 2 results cannot be journaled right now
        self._replayed: Counter[tuple[int, str, bytes]] = Counter()  # QoS 2 outputs the broker was sent
        self._memory: deque[Message] = deque()
        self._memory_size = 0
        self._inflight: dict[int, int] = {}  # paho mid -> seq of QoS 1 messages awaiting PUBACK
        self._sent_order: deque[tuple[int, int]] = deque()  # (seq, mid) in the order handed to paho
        self._lock = threading.RLock()
        self._marks: deque[tuple[int, float]] = deque()  # (index of a queued message, monotonic time it was put)
        self._enqueued = 0  # messages put into memory or spill ...
        self._taken = 0  # ... and taken from there for the client: the oldest waiting one has this index
        self._unwritten = 0  # QoS 0 messages handed to paho, not yet written to its socket
        self._idle = threading.Condition(self._lock)
        self.put_count = 0
        self.sent = 0  # handed to the client
        self.acknowledged = 0  # QoS 1 PUBACKs (QoS 0: counted when sent)
        self.spilled = 0  # messages that went through the spill files
        self.packet_limit = MQTT_MAX_PACKET  # the largest PUBLISH the broker takes (set by the sink at CONNACK)
        self.too_large = 0  # messages refused because their PUBLISH would exceed `packet_limit`
        self.suppress_through = 0  # outputs of records up to this seq were published before a crash
        self.on_change: Callable[[], None] | None = None  # called (network thread) when messages were confirmed
        self._deferring = False  # inside `batched()`: `put` queues, the block's end pumps
        self._publishing: Callable[[], contextlib.AbstractContextManager] = (
            getattr(client, "publishing", None) or contextlib.nullcontext)  # one wake-up of paho per pump
        self._client_lock = out_message_lock(client)  # paho makes it once, with the client

    # -- state --

    @property
    def queued(self) -> int:
        return len(self._memory) + (self.spill.messages if self.spill else 0)

    @property
    def queued_bytes(self) -> int:
        return self._memory_size + (self.spill.bytes if self.spill else 0)

    @property
    def spilled_bytes(self) -> int:
        return self.spill.bytes if self.spill else 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def full(self) -> bool:
        """True while memory and spill are both at their limits: the engine should wait."""
        limit = self.spill_bytes if self.spill is not None else 0
        return self.queued_bytes >= self.memory_bytes + limit

    def lag_seconds(self, now: float | None = None) -> float:
        """How long the oldest result still waiting for the client has waited (0 when none waits), to
        within MARK_SECONDS: what health reports as the results' lag."""
        with self._lock:
            if self._enqueued == self._taken:
                return 0.0
            self._drop_marks()
            return max(0.0, (now if now is not None else time.monotonic()) - self._marks[0][1])

    def _drop_marks(self) -> None:
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= self._taken:
            marks.popleft()

    def confirmed(self, position: int) -> int:
        """The seq through which every output is confirmed, `position` being the last seq processed."""
        with self._lock:
            heads = []
            if self._sent_order:
                heads.append(self._sent_order[0][0])
            if self._memory:
                heads.append(self._memory[0][0])
            elif self.spill is not None and self.spill.messages:
                heads.append(0)  # unknown without reading the file: nothing newer than the spill is confirmed
            return min(heads) - 1 if heads else position

    # -- putting and publishing --

    def recover(self) -> int:
        """Open the journal and re-queue its pending QoS 2 messages in the client (before it connects).
        Returns the log seq through which the journal knows every output was confirmed."""
        if self.journal is None:
            return 0
        self.journal.open()
        pending = list(self.journal.pending.values())
        with self._lock:
            self.client.preload(pending)
            for entry in pending:
                self._inflight[entry.mid] = entry.seq
                self._sent_order.append((entry.seq, entry.mid))
            self.put_count += len(pending)
            self.sent += len(pending)
        if pending:
            log.info("output journal: %d QoS 2 results the broker may hold are sent again (%d of them released)",
                     len(pending), sum(e.released for e in pending))
        return self.journal.confirmed

    def start_replay(self, confirmed: int) -> None:
        """The log replay begins: outputs of records up to `confirmed` are not published again, nor QoS 2
        outputs the journal says the broker was sent."""
        self.suppress_through = confirmed
        if self.journal is not None:
            self._replayed = self.journal.sent_outputs()

    def end_replay(self) -> None:
        self.suppress_through = 0
        self._replayed.clear()

    def confirm(self, through: int) -> None:
        """The write-ahead log records that outputs up to `through` are confirmed; so does the journal."""
        if self.journal is not None:
            self.journal.confirm(through)

    def put(self, seq: int, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if 0 < seq <= self.suppress_through:  # replaying records whose outputs the broker has
            return
        if qos == 2 and self._replayed:
            key = (seq, topic, payload)
            if self._replayed[key] > 0:  # the broker has it (completed, or re-sent from the journal)
                self._replayed[key] -= 1
                return
        message = (seq, topic, payload, qos, retain)
        with self._lock:
            self.put_count += 1
            now = time.monotonic()
            if not self._marks or now - self._marks[-1][1] >= MARK_SECONDS:
                self._marks.append((self._enqueued, now))
                if len(self._marks) > MAX_MARKS:
                    self._drop_marks()
            self._enqueued += 1
            spilling = self.spill is not None and (self.spill.messages or self._memory_size >= self.memory_bytes)
            if spilling:
                self.spill.push(message)
                self.spilled += 1
            else:
                self._memory.append(message)
                self._memory_size += _size(message)
        if not self._deferring and (qos != 2 or self.journal is None):  # QoS 2: at the round's end, one fsync
            self.pump()

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """`put`s inside only queue; one `pump` at the end hands them to the client together (the engine
        thread's results of a round: one hand-over, one wake-up of the network thread)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            self.pump()

    def pump(self, qos2_group: int = 1) -> None:
        """Hand queued messages to the client while it is connected and has room.

        `qos2_group`: journal a run of QoS 2 messages only once that many (or all that wait) fit in
        flight; on a PUBCOMP (one free slot) waiting for a group keeps the journal's fsyncs per group.

        Locks are taken in paho's order: paho calls `on_publish` (`acked`) holding its out-message
        lock, so `pump` takes that lock before ours, never after.
        """
        with self._client_lock, self._lock, self._publishing():
            while self.client.is_connected():
                if not self._memory and self.spill is not None and self.spill.messages:
                    for message in self.spill.pop(max(1, self.max_inflight)):
                        self._memory.append(message)
                        self._memory_size += _size(message)
                if not self._memory or len(self._inflight) >= self.max_inflight:
                    break
                seq, topic, payload, qos, retain = self._memory[0]
                if len(payload) + len(topic) >= self.packet_limit - 64 and self._refuse_too_large():
                    continue
                if qos == 0 and self._unwritten >= self.max_inflight:
                    break  # `acked` pumps again once paho has written half of them
                if qos == 2 and self.journal is not None:
                    if not self._publish_journaled(qos2_group):
                        break
                    continue
                info = self.client.publish(topic, payload, qos=qos, retain=retain)
                if info.rc != mqtt.MQTT_ERR_SUCCESS and qos == 0:
                    break  # not connected after all: keep it for the next pump
                self._memory.popleft()
                self._memory_size -= _size((seq, topic, payload, qos, retain))
                self._taken += 1
                self.sent += 1
                if qos:
                    self._inflight[info.mid] = seq
                    self._sent_order.append((seq, info.mid))
                else:
                    self.acknowledged += 1
                    self._unwritten += 1
            if not self._memory and not self._inflight and not (self.spill and self.spill.messages):
                self._idle.notify_all()

    def _refuse_too_large(self) -> bool:
        """Drop the front message if its PUBLISH exceeds the broker's limit (the broker would disconnect us).
        Results are checked before they are queued (a dead letter each); this catches the rest (a reply, a
        limit lowered by a reconnect). Called by `pump`, holding its locks."""
        seq, topic, payload, qos, retain = self._memory[0]
        size = publish_packet_size(topic, payload, qos)
        if size <= self.packet_limit:
            return False
        self._memory.popleft()
        self._memory_size -= _size((seq, topic, payload, qos, retain))
        self._taken += 1
        self.too_large += 1
        log.error("not publishing %d bytes to %s: over the broker's maximum packet size (%d bytes)",
                  size, topic, self.packet_limit)
        return True

    def _publish_journaled(self, group: int) -> bool:
        """The run of QoS 2 messages at the front (as many as may be in flight): journaled with one fsync,
        then published with the packet ids recorded. Called by `pump`, holding its locks. False if fewer
        than `group` of those waiting fit in flight, or if the journal cannot be written (they wait, and
        ingestion with them once the queue is full)."""
        room = self.max_inflight - len(self._inflight)
        waiting = 0
        for message in self._memory:
            if message[3] != 2 or waiting >= max(room, group) or \
                    publish_packet_size(message[1], message[2], 2) > self.packet_limit:
                break
            waiting += 1
        if room < min(group, waiting):
            return False
        run = [Entry(self.client.reserve_mid(), seq, topic, payload, retain)
               for seq, topic, payload, _qos, retain in itertools.islice(self._memory, min(room, waiting))]
        try:
            self.journal.published(run)
            self.journal.sync()
        except OSError as exc:
            self.journal.withdraw([entry.mid for entry in run])
            for entry in run:
                self.client.unreserve_mid(entry.mid)
            if self.journal_error is None:
                log.error("output journal: cannot record QoS 2 results (%s); they wait until it can", exc)
            self.journal_error = str(exc)
            return False
        self.journal_error = None
        for entry in run:
            self.client.publish_with(entry.mid, entry.topic, entry.payload, 2, entry.retain)
            message = self._memory.popleft()
            self._memory_size -= _size(message)
            self._taken += 1
            self.sent += 1
            self._inflight[entry.mid] = entry.seq
            self._sent_order.append((entry.seq, entry.mid))
        return True

    def acked(self, mid: int) -> None:
        """paho's on_publish (network thread): a QoS 1 PUBACK or QoS 2 PUBCOMP (QoS 0 publishes are
        counted in `pump`)."""
        if self.journal is not None:
            self.journal.complete(mid)
        with self._lock:
            written = mid not in self._inflight  # a QoS 0 message paho wrote to its socket
            if written:
                self._unwritten = max(0, self._unwritten - 1)
                resume = self._unwritten == self.max_inflight // 2 and self._waiting()
        if written:
            if resume:
                self.pump()
            return
        self.acked_many([mid])

    def connected(self) -> None:
        """The client (re)connected: paho dropped the QoS 0 packets it had not written; send what waits."""
        with self._lock:
            self._unwritten = 0
        self.pump()

    def _waiting(self) -> bool:
        return bool(self._memory) or bool(self.spill is not None and self.spill.messages)

    def acked_many(self, mids: list[int]) -> None:
        """QoS 1 PUBACKs taken in bulk (network thread): one refill of the window for all of them."""
        with self._lock:
            inflight = self._inflight
            confirmed = sum(inflight.pop(mid, None) is not None for mid in mids)
            if not confirmed:
                return
            self.acknowledged += confirmed
            order = self._sent_order
            while order and inflight.get(order[0][1]) != order[0][0]:
                order.popleft()
        self.pump(qos2_group=QOS2_GROUP)
        if self.on_change is not None:
            self.on_change()

    def wait_empty(self, timeout: float) -> bool:
        """Until every message was handed over and acknowledged; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._memory and not self._inflight
                                       and not (self.spill and self.spill.messages), timeout)
