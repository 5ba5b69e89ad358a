"""paho's client taking the broker's PUBACKs in bulk: the result client's receive path.

A result client receives little but acknowledgements: one PUBACK per QoS 1 result. paho reads each with
~3 `recv` calls, decodes it into a `ReasonCode` and `Properties` (MQTT 5), calls `on_publish` once and
updates its in-flight count; at 10k results/s that was most of the network thread, and each callback
refilled the window by one message. Here paho's reads are served from one buffer (`ReadHooks`) and every
complete, successful PUBACK at the head of the buffer is taken at once: paho forgets the messages
(`AckHooks.complete_acked`, its bookkeeping after `on_publish`) and `on_pubacks` gets their packet ids as one
list, so the output queue refills the window once per read, not once per acknowledgement.

Everything else stays paho's: CONNACK, PINGRESP, QoS 2 acknowledgements, a PUBACK with a failure reason
code (>= 0x80) or with properties, packets split across reads, reconnects.
"""

from __future__ import annotations

from collections.abc import Callable

from arros_mqtt.transport.paho_internals import AckHooks, out_message_lock

READ_SIZE = 64 * 1024
PUBACK = 0x40
OnPubacks = Callable[[list[int]], None]  # packet ids, in the order the broker acknowledged them


class BulkAckClient(AckHooks):
    read_size = READ_SIZE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_pubacks: OnPubacks | None = None

    def take_buffered(self) -> None:
        if self.on_pubacks is not None:
            self._take_pubacks(self.on_pubacks)

    def _take_pubacks(self, deliver: OnPubacks) -> None:
        """Complete, successful PUBACKs at the head of the buffer -> `deliver`; stops at anything else."""
        data, position = self.unparsed()
        end = len(data)
        mids: list[int] = []
        while position + 4 <= end and data[position] == PUBACK:
            length = data[position + 1]  # < 128: one length byte
            if length < 2 or length > 3 or position + 2 + length > end:  # 4+: properties, paho's turn
                break
            if length == 3 and data[position + 4] >= 0x80:  # a failure reason code: paho reports it
                break
            mids.append(data[position + 2] << 8 | data[position + 3])
            position += 2 + length
        if not mids:
            return
        self.parsed_to(position)
        with out_message_lock(self), self.callback_lock:  # the locks paho holds around `on_publish`
            done = self.complete_acked(mids)
            if done:
                deliver(done)
