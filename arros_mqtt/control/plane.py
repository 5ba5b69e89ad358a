"""The control plane: SQL subscriptions created, changed and inspected at run time over MQTT.

It is an MQTT client of its own (`{client_id}-control`, MQTT 5 when the broker config says so, for
Response Topic and Correlation Data), subscribed to `{prefix}/control`. Requests are parsed on
paho's network thread; everything that reads or changes subscriptions runs on the engine thread
(`Service.call_on_engine`), between micro-batches, so a new subscription starts on the next batch
and the others never see a half-made change. Every request gets exactly one reply.

It also keeps the catalogue (`{prefix}/catalog/{name}`, retained), publishes statuses
(`{prefix}/status/{name}`), stores run-time subscriptions under `state_dir` and enforces the
`[control]` limits. In a `[cluster]` group it reconciles this member's run-time subscriptions with the
retained catalogue on each connect: the newer version or tombstone wins (reconcile.py, docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from arros_mqtt.config import (
    GROUP_REFUSES_AGGREGATES,
    BrokerConfig,
    Config,
    SubscriptionConfig,
    member_name,
    parse_subscription,
)
from arros_mqtt.control.catalog import (
    catalog_entry,
    catalog_topic,
    connector_status,
    connector_status_topic,
    shape_of,
    status_of,
    status_topic,
    stream_of,
)
from arros_mqtt.control.limits import Limits
from arros_mqtt.control.membership import member_presence, member_status_topic, with_member
from arros_mqtt.control.protocol import (
    ControlError,
    Envelope,
    Request,
    check_outputs,
    decode_payload,
    envelope,
    error_reply,
    ok_reply,
    valid_reply_topic,
    validate,
)
from arros_mqtt.control.reconcile import Reconciler, publish_tombstone, sync_topic
from arros_mqtt.control.store import StoredSubscription, SubscriptionStore, definition_of, now_rfc3339
from arros_mqtt.control.versions import stored_version, version_of
from arros_mqtt.core.errors import ConfigError, SqlError
from arros_mqtt.engine import PER_ROW, Engine, Result, Subscription
from arros_mqtt.transport.paho_client import connect, new_client, send_at_once

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 1000  # requests waiting for the engine; past this the network thread waits (backpressure)
BUSY_SECONDS = 30.0  # ... at most this long, then the request is answered `limit_exceeded`
CHECK_SECONDS = 0.5  # how often state-size limits are checked
PAUSED_BY_REQUEST = "paused by request"


@dataclass(frozen=True)
class ControlHost:
    """What the control plane may use of the running service, and nothing more (wired by `Service`).

    `call_on_engine` runs a call on the engine thread between micro-batches; `add_result_gate` lets the
    plane hold back results of paused or over-limit subscriptions; `extra_fields(stream)` are the
    rows per field an inferred schema lacks; `connectors()` the running connectors by name (each with
    `kind` and `stats`); `reset_schema(stream)` forgets a stream's inferred schema (False: it has none
    to forget).
    """

    config: Config
    engine: Engine
    call_on_engine: Callable[[Callable[[], Any]], Future]
    add_result_gate: Callable[[Callable[[Result], bool]], None]
    extra_fields: Callable[[str], dict[str, int]]
    connectors: Callable[[], dict[str, Any]]
    reset_schema: Callable[[str], bool] = lambda _stream: False


class ControlPlane:
    def __init__(self, host: ControlHost, broker: BrokerConfig, local_client: Any = None) -> None:
        """`local_client`: in embedded mode, the broker's in-process client (`BrokerLocalClient`) instead
        of a network client built from `broker`."""
        self.host = host
        self.engine = host.engine
        self.config = host.config.control
        self.prefix = self.config.prefix
        self.topic = f"{self.prefix}/control"
        self.replies_topic = f"{self.prefix}/control/replies"
        self.broker = broker
        self.v5 = broker.protocol == "5"
        self.store = SubscriptionStore(host.config.engine.state_dir)
        self.created_at: dict[str, str] = {}
        self.limits = Limits(self.config, self._pause_for_limit)
        self.engine.on_bound_pause = self._pause_for_limit  # a run bound's pause is stored like a limit's
        self.requests: Counter[tuple[str, str]] = Counter()  # (op, "ok" or error code) -> count
        self.subscribed = threading.Event()  # set once the broker acknowledged our SUBSCRIBE
        self._local = local_client is not None
        self.client = local_client or new_client(broker, suffix="-control", persistent=False)
        if not self._local:
            self.client.max_inflight_messages_set(MAX_IN_FLIGHT)
            send_at_once(self.client)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._stopping = threading.Event()
        self._checker = threading.Thread(target=self._check_periodically, name="arros-control", daemon=True)
        # [cluster]: every member takes every request (the control topic is not shared) and answers it,
        # its reply carrying its name; its presence is retained under {prefix}/members/ (membership.py)
        self.group = host.config.cluster.group
        self.member = member_name(host.config) if self.group is not None else None
        self._presence = member_presence(self.prefix, self.group, self.member) \
            if self.group is not None and self.member is not None and not self._local else None
        # in a group, a (re)connected member reads the retained catalogue before it publishes its own run-time
        # entries, and the newer version or tombstone wins (reconcile.py)
        self._sync_topic = sync_topic(self.prefix, self.member) \
            if self._presence is not None and self.member is not None else None
        self.reconciler = Reconciler(self.prefix, self._sync_topic, self.engine, self.store, self.limits,
                                     self.created_at, self._build, self._store, self._publish_entry,
                                     self._clear_status)
        self.catalogue_read = self.reconciler.catalogue_read  # set once the retained catalogue was read
        if self._presence is not None:
            self.client.will_set(self._presence.topic, self._presence.offline, qos=1, retain=True)
        self._ops: dict[str, Callable[[Request], Any]] = {
            "create": self._create, "replace": self._replace, "drop": self._drop, "pause": self._pause,
            "resume": self._resume, "list": self._list, "describe": self._describe, "explain": self._explain,
            "reset_schema": self._reset_schema,
        }
        host.add_result_gate(self._admit)
        self._restore()

    # -- lifecycle (caller's thread) --

    def start(self, connect_wait: float = 10.0) -> None:
        if self._local:
            self._on_connect(self.client, False)
        else:
            connect(self.client, self.broker, persistent=False, on_connect=self._on_connect)
        self.subscribed.wait(connect_wait)
        self._checker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """No new requests; answer the ones already taken, then disconnect."""
        self._stopping.set()
        self.client.unsubscribe(self.topic)
        deadline = time.monotonic() + timeout
        taken = 0
        while taken < MAX_IN_FLIGHT and self._in_flight.acquire(timeout=max(0.0, deadline - time.monotonic())):
            taken += 1
        if self._checker.is_alive():
            self._checker.join(timeout)
        if self._presence is not None:  # a clean stop sends no will
            sent = self.client.publish(self._presence.topic, self._presence.offline, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not connected: the broker sends the will
                sent.wait_for_publish(min(timeout, 2.0))
        self.client.disconnect()
        self.client.loop_stop()

    def _restore(self) -> None:
        """Run-time subscriptions from the store (the engine thread is not running yet)."""
        for name, stored in self.store.load().items():
            if name in self.engine.subscriptions:
                log.warning("stored run-time subscription %s is not restored: the config file defines one with "
                            "that name (it stays stored until dropped)", name)
                continue
            try:
                self.engine.add_when_ready(parse_subscription(stored.definition, name, str(self.store.path)))
            except (ConfigError, SqlError) as exc:
                log.warning("stored run-time subscription %s no longer runs (%s); it stays stored until dropped "
                            "or replaced", name, exc)
                continue
            added = self.engine.subscriptions.get(name)
            if self.group is not None and added is not None and added.shape.kind != PER_ROW:
                self.engine.remove(name)
                log.warning("stored run-time subscription %s does not run: %s", name, GROUP_REFUSES_AGGREGATES)
                continue
            self.created_at[name] = stored.created_at
            if stored.paused is not None:
                self.engine.pause(name, stored.paused)
        log.info("%d run-time subscriptions restored from %s", len(self.created_at), self.store.path)
        self._restore_config_pauses()

    def _restore_config_pauses(self) -> None:
        """Config-file subscriptions paused before the restart stay paused while their SQL is the same."""
        for name, (sql, reason) in list(self.store.config_paused.items()):
            subscription = self.engine.subscriptions.get(name)
            if subscription is None or subscription.config.origin != "config" or subscription.config.sql != sql:
                log.info("config-file subscription %s was paused (%s); its definition changed: it runs", name,
                         reason)
                with contextlib.suppress(OSError):
                    self.store.pause_config(name, sql, None)
                continue
            self.engine.pause(name, reason)
            log.warning("subscription %s stays paused from the last run: %s (resume it to run it)", name, reason)

    # -- network thread --

    def _on_connect(self, client: mqtt.Client, _session_present: bool) -> None:
        topics = [(self.topic, 1), (catalog_topic(self.prefix, "+"), 1)]
        if self._sync_topic is not None:
            topics.append((self._sync_topic, 1))
        client.subscribe(topics)
        if self._presence is not None:
            client.publish(self._presence.topic, self._presence.online, qos=1, retain=True)
        self.host.call_on_engine(self.reconciler.publish_catalog)

    def _on_subscribe(self, *_: object) -> None:
        self.subscribed.set()
        if self._sync_topic is not None:
            self.client.publish(self._sync_topic, b"", qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topic:
            if not self._stopping.is_set():
                self._on_request(message)
        elif message.topic == self._sync_topic:
            self.host.call_on_engine(self.reconciler.synced)
        elif message.payload:  # a retained catalogue entry: clear it if it names no live subscription
            name, entry = message.topic.rsplit("/", 1)[-1], message.payload
            if self.group is not None:  # in a group: another member's; run it too if it was there before us
                if message.retain:
                    self.host.call_on_engine(lambda: self.reconciler.reconcile(name, entry))
            else:
                self.host.call_on_engine(lambda: self._clear_if_stale(name))

    def _on_request(self, message: mqtt.MQTTMessage) -> None:
        properties = message.properties
        response_topic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        request = self._parse(message.payload)
        if not isinstance(request, Request):
            self._reply(request[0], response_topic, correlation, request[1])
            return
        reply_to = Envelope(request.request_id, request.reply_to)
        if not self._in_flight.acquire(timeout=BUSY_SECONDS):
            busy = ControlError("limit_exceeded", f"{MAX_IN_FLIGHT} requests are waiting for the engine; retry")
            self._reply(reply_to, response_topic, correlation, error_reply(request.request_id, busy))
            return
        future = self.host.call_on_engine(lambda: self._execute(request))

        def answer(done: Future) -> None:
            self._in_flight.release()
            if done.exception() is not None:  # _execute answers every error itself; this is our bug
                log.error("control request %s failed: %r", request.op, done.exception())
                failure = ControlError("internal_error", "the request failed inside Arros; see its log")
                self._reply(reply_to, response_topic, correlation, error_reply(request.request_id, failure))
            else:
                self._reply(reply_to, response_topic, correlation, done.result())

        future.add_done_callback(answer)

    def handle(self, payload: bytes, timeout: float = BUSY_SECONDS) -> bytes:
        """A request handled exactly as one published on the control topic (the same parsing, limits,
        engine call and counters); its reply payload. For in-process edges: the web console."""
        request = self._parse(payload)
        if not isinstance(request, Request):
            return request[1]
        if self._stopping.is_set() or not self._in_flight.acquire(timeout=timeout):
            busy = ControlError("limit_exceeded", "the control plane is stopping or busy; retry")
            return error_reply(request.request_id, busy)
        try:
            return self.host.call_on_engine(lambda: self._execute(request)).result(timeout)
        except Exception as exc:  # _execute answers every error itself: a timeout, or our bug
            log.error("control request %s failed: %r", request.op, exc)
            failure = ControlError("internal_error", "the request failed inside Arros; see its log")
            return error_reply(request.request_id, failure)
        finally:
            self._in_flight.release()

    def _parse(self, payload: bytes) -> Request | tuple[Envelope, bytes]:
        """The validated request, or where to answer and the error reply (counted as `invalid`)."""
        reply_to: Envelope = Envelope()
        try:
            data = decode_payload(payload)
            reply_to = envelope(data)
            return validate(data)
        except ControlError as exc:
            self.requests[("invalid", exc.code)] += 1
            return reply_to, error_reply(reply_to.request_id, exc)

    def _reply(self, to: Envelope, response_topic: str | None, correlation: bytes | None, payload: bytes) -> None:
        """To the Response Topic, else `reply_to`, else `{prefix}/control/replies`; never to the control topic."""
        topic = next((t for t in (response_topic, to.reply_to)
                      if t is not None and valid_reply_topic(t) and t != self.topic), self.replies_topic)
        if self.member is not None:
            payload = with_member(payload, self.member)
        properties = None
        if self.v5 and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        try:
            self.client.publish(topic, payload, qos=1, properties=properties)
        except Exception as exc:  # paho refuses it (too large for MQTT): the request still gets its one reply
            log.error("control reply to %s could not be published: %r", topic, exc)
            failure = ControlError("internal_error", f"the reply could not be published: {type(exc).__name__}")
            self.client.publish(topic, error_reply(to.request_id, failure), qos=1, properties=properties)

    # -- engine thread --

    def _execute(self, request: Request) -> bytes:
        try:
            result = self._ops[request.op](request)
        except ControlError as exc:
            self.requests[(request.op, exc.code)] += 1
            log.debug("control %s %s refused: %s", request.op, request.name or "", exc)
            return error_reply(request.request_id, exc)
        except Exception as exc:
            self.requests[(request.op, "internal_error")] += 1
            log.exception("control %s %s failed", request.op, request.name or "")
            return error_reply(request.request_id, ControlError("internal_error", f"{type(exc).__name__}: {exc}"))
        self.requests[(request.op, "ok")] += 1
        if request.op not in ("list", "describe", "explain"):
            log.info("control: %s %s", request.op, request.name)
        return ok_reply(request.request_id, result)

    def _create(self, request: Request) -> dict[str, Any]:
        name = request.name
        assert name is not None
        if name in self.engine.subscriptions:
            raise ControlError("exists", f"a subscription named {name!r} exists ({self._origin(name)}); "
                               "use replace to change it")
        self.limits.check_create(len(self.engine.subscriptions))
        subscription = self._build(self._definition(request))
        created = now_rfc3339()
        self._store(StoredSubscription(name, definition_of(subscription.config), created,
                                       version=version_of(created, self.member)))
        self.engine.install(subscription)
        self.created_at[name] = created
        return self._publish_entry(subscription)

    def _replace(self, request: Request) -> dict[str, Any]:
        old = self._changeable(request)
        subscription = self._build(self._definition(request))
        created = now_rfc3339()
        self._store(StoredSubscription(old.name, definition_of(subscription.config), created,
                                       version=version_of(created, self.member)))
        self.engine.install(subscription, replace=True)
        self.limits.forget(old.name)
        self.created_at[old.name] = created
        return self._publish_entry(subscription)

    def _drop(self, request: Request) -> dict[str, Any]:
        subscription = self._changeable(request)
        name = subscription.name
        try:
            self.store.remove(name)
        except OSError as exc:
            raise ControlError("internal_error", f"cannot write {self.store.path}: {exc}") from None
        self.engine.remove(name)
        self.limits.forget(name)
        self.created_at.pop(name, None)
        if self.group is not None:  # a member that is down learns of the drop from the tombstone
            self._publish_tombstone(name)
            self._clear_status(name)
        else:
            self.client.publish(catalog_topic(self.prefix, name), b"", qos=1, retain=True)
        return {"name": name, "dropped": True}

    def _pause(self, request: Request) -> dict[str, Any]:
        subscription = self._live(request.name)
        self._set_paused(subscription, PAUSED_BY_REQUEST)
        return self._status(subscription)

    def _resume(self, request: Request) -> dict[str, Any]:
        subscription = self._live(request.name)
        self._set_paused(subscription, None)
        self.limits.forget(subscription.name)
        return self._status(subscription)

    def _reset_schema(self, request: Request) -> dict[str, Any]:
        """Forget a stream's inferred schema (a hostile first message fixed it): the next micro-batch
        infers it again and the stream's subscriptions are planned afresh (their state starts empty)."""
        stream = request.name or ""
        if stream not in self.host.config.streams:
            raise ControlError("not_found", f"no stream named {stream!r}")
        if not self.host.config.streams[stream].infers_schema or not self.host.reset_schema(stream):
            raise ControlError("invalid_request", f"stream {stream!r} declares its schema in the config file; "
                               "only an inferred schema can be reset")
        waiting = sorted(name for name, config in self.engine.pending.items() if stream in
                         self.engine.awaited_streams(config.sql))
        return {"stream": stream, "reset": True, "waiting": waiting}

    def _list(self, _request: Request) -> dict[str, Any]:
        rows = []
        for name in sorted(self.engine.subscriptions):
            subscription = self.engine.subscriptions[name]
            config = subscription.config
            rows.append({"name": name, "origin": config.origin, "kind": subscription.shape.kind,
                         "stream": subscription.shape.stream, "output": config.output.text if config.output else None,
                         "paused": name in self.engine.paused, "rows_in": subscription.stats.rows_in,
                         "rows_out": subscription.stats.rows_out})
        return {"subscriptions": rows}

    def _describe(self, request: Request) -> dict[str, Any]:
        subscription = self._live(request.name)
        stream = subscription.shape.stream
        return {**catalog_entry(subscription, self.created_at.get(subscription.name), self._version(subscription)),
                "status": self._status(subscription),
                "stream": stream_of(self.engine.streams[stream], self.host.config.streams[stream].infers_schema,
                                    self.host.extra_fields(stream))}

    def _explain(self, request: Request) -> dict[str, Any]:
        if request.name is not None:
            subscription = self._live(request.name)
        else:
            assert request.sql is not None
            subscription = self._build(SubscriptionConfig(name="explain", sql=request.sql, origin="control"),
                                       to_run=False)
        result = {"name": request.name, "sql": subscription.config.sql, **shape_of(subscription)}
        if request.name is not None:
            stats = subscription.stats
            result.update(state_rows=stats.state_rows, state_bytes=stats.state_bytes)
        explained = {**result, **self.engine.explain(subscription)}
        if request.name is None:
            self.engine.release(subscription)  # built only to be explained
        return explained

    # -- helpers (engine thread) --

    def _live(self, name: str | None) -> Subscription:
        subscription = self.engine.subscriptions.get(name or "")
        if subscription is None:
            raise ControlError("not_found", f"no subscription named {name!r}")
        return subscription

    def _changeable(self, request: Request) -> Subscription:
        subscription = self._live(request.name)
        if subscription.config.origin != "control":
            raise ControlError("forbidden", f"{subscription.name!r} is defined in the config file; change it there "
                               "(pause and resume work over MQTT)")
        return subscription

    def _origin(self, name: str) -> str:
        return "from the config file" if self.engine.subscriptions[name].config.origin == "config" else "run-time"

    def _definition(self, request: Request) -> SubscriptionConfig:
        assert request.name is not None
        try:
            config = parse_subscription(request.definition, request.name, "request")
        except ConfigError as exc:
            raise ControlError("invalid_request", f"{exc.key}: {exc.message}") from None
        check_outputs(config, self.prefix)
        return config

    def _build(self, config: SubscriptionConfig, to_run: bool = True) -> Subscription:
        """`to_run`: it will run (in a group an aggregate is refused), else it is only explained."""
        try:
            subscription = self.engine.build(config)
        except SqlError as exc:
            code = exc.code if exc.code in ("invalid_sql", "forbidden", "unknown_stream") else "invalid_sql"
            code = "forbidden" if exc.code == "output_loop" else code
            raise ControlError(code, str(exc)) from None
        if self.group is not None and subscription.shape.kind != PER_ROW and to_run:
            self.engine.release(subscription)  # a group runs no aggregate whose tables it could share
            raise ControlError("forbidden", GROUP_REFUSES_AGGREGATES)
        return subscription

    def _store(self, entry: StoredSubscription) -> None:
        try:
            self.store.put(entry)
        except OSError as exc:
            raise ControlError("internal_error", f"cannot write {self.store.path}: {exc}") from None

    def _set_paused(self, subscription: Subscription, reason: str | None) -> None:
        """Pause (with a reason) or resume; a run-time subscription keeps that across restarts."""
        name = subscription.name
        if subscription.config.origin == "control":
            stored = self.store.entries.get(name)
            if stored is not None and stored.paused != reason:
                self._store(dataclasses.replace(stored, paused=reason))
        elif self.store.config_paused.get(name, (None, None))[1] != reason:
            try:
                self.store.pause_config(name, subscription.config.sql, reason)
            except OSError as exc:
                raise ControlError("internal_error", f"cannot write {self.store.path}: {exc}") from None
        if reason is None:
            self.engine.resume(name)
        else:
            self.engine.pause(name, reason)

    def _pause_for_limit(self, name: str, reason: str) -> None:
        subscription = self.engine.subscriptions[name]
        try:
            self._set_paused(subscription, reason)
        except ControlError as exc:  # paused now, but not on disk: say so, keep running
            self.engine.pause(name, reason)
            log.error("subscription %s: %s", name, exc.message)
        log.warning("subscription %s paused: %s", name, reason)
        self._publish_status(subscription)

    def _status(self, subscription: Subscription) -> dict[str, Any]:
        status = status_of(subscription, self.engine.paused.get(subscription.name))
        stream = subscription.shape.stream
        if self.host.config.streams[stream].infers_schema:  # fields the inferred schema lacks, not decoded
            status["stream_extra_fields"] = dict(self.host.extra_fields(stream))
        return status

    def _publish_status(self, subscription: Subscription) -> None:
        status = self._status(subscription)
        topic = status_topic(self.prefix, subscription.name)
        if self.member is None:
            self.client.publish(topic, orjson.dumps(status))
            return
        # one status per member of a group, on its own topic, with its name; retained, so a reader sees every
        # member's last one at once, a gone member's too (groupstatus.py)
        status["member"] = self.member
        self.client.publish(member_status_topic(self.prefix, subscription.name, self.member), orjson.dumps(status),
                            retain=True)

    def _clear_status(self, name: str) -> None:
        """A dropped subscription's retained status in a group (outside one, statuses are not retained)."""
        if self.member is not None:
            self.client.publish(member_status_topic(self.prefix, name, self.member), b"", qos=1, retain=True)

    def _version(self, subscription: Subscription) -> str | None:
        stored = self.store.entries.get(subscription.name)
        return stored_version(stored) if stored is not None and subscription.config.origin == "control" else None

    def _publish_entry(self, subscription: Subscription) -> dict[str, Any]:
        entry = catalog_entry(subscription, self.created_at.get(subscription.name), self._version(subscription))
        self.client.publish(catalog_topic(self.prefix, subscription.name), orjson.dumps(entry), qos=1, retain=True)
        return entry

    def _publish_tombstone(self, name: str) -> None:
        publish_tombstone(self.client, self.prefix, name, self.member, expires=self.v5 and not self._local)

    def _clear_if_stale(self, name: str) -> None:
        if name not in self.engine.subscriptions:
            log.info("clearing the stale catalogue entry %s", catalog_topic(self.prefix, name))
            self.client.publish(catalog_topic(self.prefix, name), b"", qos=1, retain=True)

    def _admit(self, result: Result) -> bool:
        """Nothing from a paused subscription (also time-driven results, e.g. windows closed by a tick)."""
        return result.subscription.name not in self.engine.paused and self.limits.admit(result)

    def _check(self, publish_statuses: bool) -> None:
        self.reconciler.check_deadline()
        self.limits.check_state(list(self.engine.subscriptions.values()), self.engine.paused)
        if publish_statuses:
            for subscription in list(self.engine.subscriptions.values()):
                self._publish_status(subscription)
            self._publish_connector_statuses()

    def _publish_connector_statuses(self) -> None:
        for name, connector in self.host.connectors().items():
            status = connector_status(name, connector.kind, connector.stats)
            self.client.publish(connector_status_topic(self.prefix, name), orjson.dumps(status))

    # -- checker thread --

    def _check_periodically(self) -> None:
        """Schedule limit checks and status messages on the engine thread, one at a time."""
        next_status = time.monotonic()
        pending: Future | None = None
        while not self._stopping.wait(min(CHECK_SECONDS, self.config.status_interval)):
            if pending is not None and not pending.done():
                continue  # the engine is busy: do not pile up checks behind it
            due = time.monotonic() >= next_status
            if due:
                next_status = time.monotonic() + self.config.status_interval
            pending = self.host.call_on_engine(lambda due=due: self._check(due))
