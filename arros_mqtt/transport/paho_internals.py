"""Every use of paho-mqtt's private names, behind named members of ours, and the check that the installed
paho still has them.

paho has no public hook for what our clients need: reading the socket in large chunks (bulk_read.py),
writing queued packets together and waking its network thread once per round (bulk_write.py), choosing
QoS 2 packet ids and holding PUBRELs back (egress/exactly_once_client.py). Those subclass the classes here
and keep their behaviour where it is; nothing else in Arros touches a paho name that starts with an
underscore (tests/unit/test_third_party_internals.py scans for it). The overrides here only translate
paho's private hooks into ours; on the per-packet paths they read paho's state directly, not through a
property or function of ours (a call per message would be a cost on the hot path).

Importing this module checks the installed paho: outside the tested versions, or without a name listed
below, it stops with one DependencyError instead of breaking packet ids, keepalive or wake-ups silently.
paho 2.1 has no `_packet` (the PUBREC decoder) and no `_last_bytes_received` (keepalive), so the tested
range starts at 2.2.
"""

from __future__ import annotations

import importlib
import logging
import struct
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, ClassVar

import paho.mqtt.client as mqtt

from arros_mqtt.transport.library_check import Privates, check_library, init_attributes

LOWEST, BELOW, TESTED_WITH = "2.2", "3", "2.2.0"
CLIENT_METHODS = ("_easy_log", "_handle_on_message", "_handle_pubrec", "_mid_generate", "_packet_queue",
                  "_packet_read", "_packet_write", "_send_pubrel", "_sock_recv", "_sock_send")
CLIENT_ATTRIBUTES = ("_callback_mutex", "_client_id", "_in_callback_mutex", "_in_packet", "_inflight_messages",
                     "_last_bytes_received", "_last_mid", "_last_msg_out", "_mid_generate_mutex", "_msgtime_mutex",
                     "_out_message_mutex",
                     "_out_messages", "_out_packet", "_protocol", "_sock", "_sockpairW", "_thread", "_userdata")
PRIVATES = (
    Privates("paho.mqtt.client.Client", lambda: dir(mqtt.Client), CLIENT_METHODS),
    Privates("paho.mqtt.client.Client()", lambda: init_attributes(mqtt.Client), CLIENT_ATTRIBUTES),
    Privates("paho.mqtt.client.MQTTMessageInfo", lambda: dir(mqtt.MQTTMessageInfo), ("_set_as_published",)),
    Privates("paho.mqtt._packet", lambda: dir(importlib.import_module("paho.mqtt._packet")), ("decode_pubrec",)),
)


def check(privates: tuple[Privates, ...] = PRIVATES, installed: str | None = None) -> None:
    """DependencyError unless the installed paho is a tested version with every name of `privates`."""
    check_library("paho-mqtt", LOWEST, BELOW, TESTED_WITH, privates, installed)


log = logging.getLogger(__name__)
check()
_packet = importlib.import_module("paho.mqtt._packet")  # after the check, which reports its absence clearly

_PUBACK = struct.Struct("!BBH")
OutPacket = dict[str, Any]  # an entry of paho's out-queue: command, mid, qos, pos, to_process, packet, info
Take = Callable[[bytes, int], None]  # (read buffer, first unparsed position): see `ReadHooks.read_buffered`


def client_id_of(client: mqtt.Client) -> str:
    """The id the client connects with (paho's own when none was given)."""
    return client._client_id.decode()


def out_message_lock(client: mqtt.Client) -> threading.RLock:
    """paho's lock over its in-flight messages. paho holds it while calling `on_publish`: code that takes a
    lock of its own both there and outside must take this one first."""
    return client._out_message_mutex


class ClientInternals(mqtt.Client):
    """paho state that several of our subclasses read."""

    @property
    def callback_lock(self) -> threading.Lock:
        """Held by paho around every user callback; ours that paho does not call itself hold it too."""
        return self._in_callback_mutex

    @property
    def out_queue(self) -> deque[OutPacket]:
        """Packets queued for the network thread to write, oldest first."""
        return self._out_packet

    def send_pubacks(self, mids: list[int]) -> None:
        """PUBACKs for these QoS 1 packet ids, in this order, queued as one write (one wake-up of the network
        thread; paho's `ack` queues, and wakes it, per packet). `40 02 id`: success, as paho sends it."""
        if mids:
            self._packet_queue(mqtt.PUBACK, b"".join(_PUBACK.pack(0x40, 2, mid) for mid in mids), 0, 0)


class ReadHooks(ClientInternals):
    """paho's receive path, open to bulk reading (bulk_read.py).

    paho reads a packet with ~3 `_sock_recv` calls and goes back to `select` after each; here they are
    served from one read of `read_size` bytes, kept in a buffer the subclass may parse itself
    (`read_buffered`, or `unparsed` and `parsed_to`). A new socket (reconnect) starts with an empty buffer.
    `on_message` is called directly, without paho's matching against per-filter callbacks: the ingress
    client has none, and the matching cost as much as our callback.
    """

    read_size: ClassVar[int]  # set by the subclass

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_position = 0
        self._read_socket: object | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._read_socket:  # a new connection: bytes of the old one are not its stream
            self._read_socket = self._sock
            self._read_buffer, self._read_position = b"", 0
        if self._read_position >= len(self._read_buffer):
            data = super()._sock_recv(self.read_size)  # BlockingIOError when nothing is there, as paho expects
            if not data:
                return data  # the peer closed: paho sees the connection lost
            self._read_buffer, self._read_position = data, 0
        end = self._read_position + bufsize
        chunk = self._read_buffer[self._read_position:end]
        self._read_position += len(chunk)
        return chunk

    @property
    def buffered(self) -> int:
        """Bytes read from the socket that are not parsed yet (0 without a socket)."""
        return len(self._read_buffer) - self._read_position if self._sock is self._read_socket else 0

    def unparsed(self) -> tuple[bytes, int]:
        """The buffer, and the position of its first byte not parsed yet."""
        return self._read_buffer, self._read_position

    def parsed_to(self, position: int) -> None:
        """The subclass took the buffer's bytes up to `position`; they count as received for keepalive."""
        self._read_position = position
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()

    def read_buffered(self, max_packets: int, take: Take | None, write_between: bool) -> mqtt.MQTTErrorCode:
        """paho's `loop_read`, repeated while read bytes remain (none waits for the next `select`). Before paho
        parses each packet, `take(buffer, position)` may consume complete packets at the head itself (then
        calling `parsed_to`). With `write_between`, queued packets are written between reads: while a broker
        streams a backlog the buffer never runs dry, and paho writes only once `loop_read` returns.

        Written against paho's state directly: a paho-parsed packet (QoS 1, properties) costs no call more."""
        while True:
            if take is not None and self.buffered and self._in_packet["command"] == 0:
                take(self._read_buffer, self._read_position)
            rc = super().loop_read(max_packets)
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None or not self.buffered:
                return rc
            if write_between and self._out_packet:
                rc = self.loop_write()
                if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                    return rc

    @property
    def between_packets(self) -> bool:
        """paho has read no part of the next packet: the buffer's head is a packet's first byte."""
        return self._in_packet["command"] == 0

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                log.error("ingress on_message failed: %s", err)
                if not self.suppress_exceptions:
                    raise


class WriteHooks(ClientInternals):
    """paho's send path, open to bulk writing (bulk_write.py).

    Where paho writes its out-queue (`_packet_write`) the subclass's `write_queued` runs; `paho_packet_write`
    is paho's own (one packet). While `quiet_thread` is the calling thread and paho's network thread runs,
    a queued packet does not wake that thread (paho sends a byte on a socket pair per packet): it sets
    `wake_owed`, and `wake` sends the one wake-up.
    """

    quiet_thread: int | None = None
    wake_owed = False

    def _packet_queue(self, command: int, packet: bytes, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTErrorCode:
        thread, caller = self._thread, threading.get_ident()
        if thread is None or (caller != self.quiet_thread and caller != thread.ident):
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0, "to_process": len(packet),
                                 "packet": packet, "info": info})
        if caller != thread.ident:  # the network thread itself writes before its next `select` sleeps
            self.wake_owed = True
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def wake(self) -> None:
        """Wake the network thread: it leaves `select` and writes the queue."""
        if self._sockpairW is not None:
            with suppress(BlockingIOError):  # the pipe is full of wake-ups already
                self._sockpairW.send(b"0")

    def _packet_write(self) -> mqtt.MQTTErrorCode:
        return self.write_queued()

    def write_queued(self) -> mqtt.MQTTErrorCode:
        """Write from the head of `out_queue` (the subclass's bulk writer; paho's own here)."""
        return self.paho_packet_write()

    def paho_packet_write(self) -> mqtt.MQTTErrorCode:
        """paho's own writer: (part of) the packet at the head of the queue."""
        return super()._packet_write()

    def sock_send(self, data: bytes) -> int:
        """One `send` on the socket; paho's errors: BlockingIOError to retry, OSError when lost."""
        return self._sock_send(data)

    def log_error(self, message: str, *args: Any) -> None:
        """Logged as paho logs (its logger and `on_log`)."""
        self._easy_log(mqtt.MQTT_LOG_ERR, message, *args)

    def wrote(self) -> None:
        """Bytes went out: paho's keepalive clock restarts."""
        with self._msgtime_mutex:
            self._last_msg_out = mqtt.time_func()

    def current_on_publish(self) -> mqtt.CallbackOnPublish | None:
        with self._callback_mutex:  # as paho reads it
            return self.on_publish

    @staticmethod
    def set_published(packets: list[OutPacket]) -> None:
        """These QoS 0 PUBLISHes are written: their `MQTTMessageInfo` says so (`wait_for_publish` returns)."""
        for packet in packets:
            packet["info"]._set_as_published()


class AckHooks(ReadHooks):
    """paho's receive path for a client that parses acknowledgements itself (bulk_ack.py): before paho
    reads a packet (`_packet_read`, called once per packet: its `loop_read` drains up to one packet per
    message in flight) the subclass's `take_buffered` may take what it can from the buffer; and paho's
    bookkeeping of acknowledged QoS 1 messages (what `_do_on_publish` does after the callback), for many
    packet ids at once."""

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        # paho's state read directly: this runs once per packet paho parses
        if self._in_packet["command"] == 0 and self._read_position < len(self._read_buffer) \
                and self._sock is self._read_socket:
            self.take_buffered()
        return super()._packet_read()

    def take_buffered(self) -> None:
        """Take complete packets at the head of the buffer (`unparsed`, `parsed_to`); paho reads the rest."""

    @property
    def paho_in_flight(self) -> int:
        """Messages paho holds until the broker acknowledges them."""
        return len(self._out_messages)

    def complete_acked(self, mids: list[int]) -> list[int]:
        """The broker acknowledged these QoS 1 messages: paho forgets them (their `MQTTMessageInfo` says
        published). Returns those paho had in flight (others are ignored, as paho ignores them). Called
        holding `out_message_lock`, as paho does."""
        out_messages = self._out_messages
        done = []
        for mid in mids:
            message = out_messages.get(mid)
            if message is None or message.qos != 1:
                continue
            del out_messages[mid]
            message.info._set_as_published()
            self._inflight_messages -= 1
            done.append(mid)
        return done


class QoS2Hooks(ClientInternals):
    """paho's QoS 2 sender state, open to the output journal (egress/exactly_once_client.py).

    Where paho picks a packet id (`_mid_generate`) the subclass's `next_mid` runs, and on a PUBREC its
    `handle_pubrec(mid)` instead of paho's immediate PUBREL. `out_messages` (paho's in-flight messages by
    id, under `out_message_lock`) and `send_pubrel` are paho's.
    """

    def _mid_generate(self) -> int:
        return self.next_mid()

    def next_mid(self) -> int:
        """The packet id of the next message (paho's own choice here)."""
        return super()._mid_generate()

    def _handle_pubrec(self) -> mqtt.MQTTErrorCode:
        result = _packet.decode_pubrec(self._in_packet["command"], self._in_packet["packet"], self._protocol)
        return self.handle_pubrec(result.mid)

    def handle_pubrec(self, mid: int) -> mqtt.MQTTErrorCode:
        """The broker has the message `mid` (paho's own handling here: PUBREL at once)."""
        return super()._handle_pubrec()

    @property
    def mid_lock(self) -> threading.Lock:
        """paho's lock around choosing a packet id."""
        return self._mid_generate_mutex

    @property
    def last_mid(self) -> int:
        """The packet id chosen last (paho's counter)."""
        return self._last_mid

    @last_mid.setter
    def last_mid(self, mid: int) -> None:
        self._last_mid = mid

    @property
    def out_messages(self) -> dict[int, mqtt.MQTTMessage]:
        return self._out_messages

    def send_pubrel(self, mid: int) -> mqtt.MQTTErrorCode:
        return self._send_pubrel(mid)
