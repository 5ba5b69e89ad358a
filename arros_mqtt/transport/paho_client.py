"""paho-mqtt 2 clients built from `[broker]`: protocol, TLS, auth, persistent session, reconnect.

Ingress and egress each get a client of their own (`{client_id}` and `{client_id}-out`), so a
burst of results never queues behind incoming telemetry on one socket. paho's network thread
reconnects by itself; we add jitter to its backoff so a fleet of Arros instances restarted together
does not reconnect in lockstep.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from arros_mqtt.config import BrokerConfig
from arros_mqtt.transport.paho_internals import client_id_of

log = logging.getLogger(__name__)
RECONNECT_MIN, RECONNECT_MAX = 0.5, 30.0


def new_client(broker: BrokerConfig, suffix: str = "", persistent: bool = True,
               client_class: type[mqtt.Client] = mqtt.Client) -> mqtt.Client:
    """A configured but unconnected client; `connect()` starts it."""
    v5 = broker.protocol == "5"
    client = client_class(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=broker.client_id + suffix,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else (broker.clean_start or not persistent),
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(
            ca_certs=broker.tls_ca, certfile=broker.tls_cert, keyfile=broker.tls_key,
            cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
    client.max_queued_messages_set(0)
    return client


def send_at_once(client: mqtt.Client) -> None:
    """TCP_NODELAY on the client's socket: request/response traffic (the control topic) is a few small
    packets each way, which Nagle's algorithm together with delayed ACKs held back ~40 ms per hop."""

    def opened(_client: mqtt.Client, _userdata: object, sock) -> None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = opened


def connect(
    client: mqtt.Client, broker: BrokerConfig, persistent: bool = True,
    on_connect: Callable[[mqtt.Client, bool], None] | None = None, receive_maximum: int | None = None,
    on_connack: Callable[[Properties | None], None] | None = None,
) -> None:
    """Start the network thread; it keeps (re)connecting with jittered backoff until `disconnect`.

    `receive_maximum` (MQTT 5): how many QoS 1 messages the broker may send before we acknowledge them.
    `on_connack`: called with the CONNACK's properties (MQTT 5: e.g. the broker's Maximum Packet Size;
    None for MQTT 3.1.1) before `on_connect`.
    """

    def connected(client, _userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker %s refused %s: %s", broker.url, client_id_of(client), reason_code)
            return
        if on_connack is not None:
            on_connack(properties)
        log.info("connected to %s as %s (session present: %s)", broker.url, client_id_of(client),
                 flags.session_present)
        if on_connect is not None:
            on_connect(client, flags.session_present)

    def disconnected(client, _userdata, _flags, reason_code, _properties) -> None:
        jitter = random.uniform(0.5, 1.5)
        client.reconnect_delay_set(RECONNECT_MIN * jitter, RECONNECT_MAX * jitter)
        if reason_code.value != 0:
            log.warning("lost connection to %s (%s); reconnecting", broker.url, reason_code)

    client.on_connect = connected
    client.on_disconnect = disconnected
    properties = None
    clean_start: bool | int = mqtt.MQTT_CLEAN_START_FIRST_ONLY
    if broker.protocol == "5":
        clean_start = broker.clean_start or not persistent
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = int(broker.session_expiry) if persistent else 0
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
    client.connect_async(broker.host, broker.port, keepalive=broker.keepalive, clean_start=clean_start,
                         properties=properties)
    client.loop_start()
