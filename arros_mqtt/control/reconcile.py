"""A group member's run-time subscriptions against the group's retained catalogue (docs/cluster.md).

A member that was down, or joins later, misses the creates, replaces and drops made meanwhile. On each
(re)connect it reads the retained `{prefix}/catalog/+` entries and, for each run-time one, the newer version
or tombstone wins (versions.py). Its own run-time entries wait until the catalogue is read: a message to
itself on `{prefix}/members/{member}/catalog-sync`, sent after the SUBACK, arrives after the retained entries
the broker queued for that SUBSCRIBE; then it publishes only the entries the broker did not have, so an older
entry of its own never overwrites a newer one. Runs on the engine thread (`ControlPlane` calls it there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from arros_mqtt.config import SubscriptionConfig, parse_subscription
from arros_mqtt.control.catalog import catalog_topic
from arros_mqtt.control.limits import Limits
from arros_mqtt.control.protocol import ControlError, check_outputs
from arros_mqtt.control.store import StoredSubscription, SubscriptionStore, definition_of, now_rfc3339
from arros_mqtt.control.versions import (
    ADOPT,
    DROP,
    REPUBLISH,
    TAKE,
    TOMBSTONE_SECONDS,
    decide,
    entry_version,
    is_tombstone,
    tombstone,
    version_of,
)
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.engine import Engine, Subscription

log = logging.getLogger(__name__)
SYNC_SECONDS = 10.0  # in a group: the longest wait for the retained catalogue before publishing our own entries
ADOPTED_KEYS = ("sql", "output", "format", "qos", "retain", "batch", "timestamps", "archive", "late_output")


def sync_topic(prefix: str, member: str) -> str:
    return f"{prefix}/members/{member}/catalog-sync"


def publish_tombstone(client: Any, prefix: str, name: str, member: str | None, expires: bool) -> None:
    """A dropped run-time subscription's retained tombstone; `expires`: with an MQTT 5 Message Expiry Interval
    of TOMBSTONE_SECONDS (under 3.1.1 it stays until something replaces it)."""
    properties = None
    if expires:
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = TOMBSTONE_SECONDS
    payload = orjson.dumps(tombstone(name, version_of(now_rfc3339(), member)))
    client.publish(catalog_topic(prefix, name), payload, qos=1, retain=True, properties=properties)


@dataclass
class Reconciler:
    """What reconciling needs of the control plane: its engine, store, limits and `created_at`, and four of
    its steps (`build` a subscription to run, raising ControlError; `store_entry`, raising ControlError;
    `publish_entry` of a live one; `dropped`: a subscription dropped here, to clear what it published)."""

    prefix: str
    sync_topic: str | None  # None: not in a group (nothing to wait for, nothing to reconcile)
    engine: Engine
    store: SubscriptionStore
    limits: Limits
    created_at: dict[str, str]
    build: Callable[[SubscriptionConfig], Subscription]
    store_entry: Callable[[StoredSubscription], None]
    publish_entry: Callable[[Subscription], Any]
    dropped: Callable[[str], None] = lambda _name: None

    def __post_init__(self) -> None:
        self.deadline: float | None = None  # waiting for the sync message until then
        self.seen: set[str] = set()  # names of the retained catalogue entries read since the last connect
        self.catalogue_read = threading.Event()  # set once the retained catalogue was read (at once outside a group)
        if self.sync_topic is None:
            self.catalogue_read.set()

    def publish_catalog(self) -> None:
        """On each connect. In a group the run-time entries wait for the retained catalogue (`synced`)."""
        if self.sync_topic is not None:
            self.seen = set()
            self.deadline = time.monotonic() + SYNC_SECONDS
        for subscription in list(self.engine.subscriptions.values()):
            if self.sync_topic is None or subscription.config.origin != "control":
                self.publish_entry(subscription)

    def synced(self) -> None:
        """The retained catalogue is read: publish our run-time entries that it did not have at all (the ones it
        had were reconciled one by one)."""
        if self.deadline is None:
            return
        self.deadline = None
        self.catalogue_read.set()
        for subscription in list(self.engine.subscriptions.values()):
            if subscription.config.origin == "control" and subscription.name not in self.seen:
                self.publish_entry(subscription)

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            log.warning("the broker did not echo %s within %.0f s; publishing the run-time catalogue entries "
                        "without it", self.sync_topic, SYNC_SECONDS)
            self.synced()

    def reconcile(self, name: str, payload: bytes) -> None:
        """A retained entry of the group's catalogue against this member's own (it joined, or was down): the newer
        definition or tombstone wins (versions.py); config-file subscriptions are each member's own."""
        self.seen.add(name)
        try:
            entry = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            log.warning("the group's catalogue entry %s is not JSON (%s); ignored", name, exc)
            return
        if not isinstance(entry, dict) or entry.get("origin") != "control":
            return  # a config-file subscription: each member's config file has it, or not
        running = self.engine.subscriptions.get(name)
        if running is not None and running.config.origin != "control":
            return
        own = self.store.entries.get(name)
        config = None
        if not is_tombstone(entry):
            try:
                config = parse_subscription({k: entry[k] for k in ADOPTED_KEYS if k in entry}, name, "catalogue")
                check_outputs(config, self.prefix)
            except (ConfigError, ControlError) as exc:
                log.warning("the group's run-time subscription %s does not run on this member: %s", name, exc)
                return
        same = config is not None and own is not None and definition_of(config) == own.definition
        action = decide(own, entry, same)
        if action == ADOPT and config is not None:
            self._adopt(name, entry, config)
        elif action == TAKE and config is not None:
            self._take(name, entry, config)
        elif action == DROP:
            self._forget(name)
        elif action == REPUBLISH and running is not None:
            log.info("run-time subscription %s: this member's definition is newer than the catalogue's; "
                     "republished", name)
            self.publish_entry(running)

    def _adopt(self, name: str, entry: dict[str, Any], config: SubscriptionConfig) -> None:
        """A group's run-time subscription this member lacks (it joined, or was down, when the subscription
        was created): created here from its retained catalogue entry, so every member runs it."""
        if name in self.engine.subscriptions or name in self.engine.pending:
            return
        try:
            self.limits.check_create(len(self.engine.subscriptions))
            subscription = self.build(config)
        except ControlError as exc:
            log.warning("the group's run-time subscription %s does not run on this member: %s", name, exc)
            return
        if self._keep(name, entry, subscription):
            self.engine.install(subscription)
            log.info("run-time subscription %s taken from the group's catalogue", name)

    def _take(self, name: str, entry: dict[str, Any], config: SubscriptionConfig) -> None:
        """The catalogue's definition is newer than ours (replaced while this member was down): it replaces ours."""
        try:
            subscription = self.build(config)
        except ControlError as exc:
            log.warning("run-time subscription %s was replaced in the group, but the new definition does not run "
                        "on this member (%s); it goes on running the old one", name, exc)
            return
        if not self._keep(name, entry, subscription):
            return
        if name in self.engine.subscriptions:
            self.engine.install(subscription, replace=True)
        else:
            self.engine.pending.pop(name, None)
            self.engine.install(subscription)
        self.limits.forget(name)
        log.info("run-time subscription %s replaced by the group's newer definition", name)

    def _keep(self, name: str, entry: dict[str, Any], subscription: Subscription) -> bool:
        """Store a definition taken from the catalogue, with the entry's version; False (released): not stored."""
        created = entry.get("created_at") if isinstance(entry.get("created_at"), str) else now_rfc3339()
        try:
            self.store_entry(StoredSubscription(name, definition_of(subscription.config), created,
                                                version=entry_version(entry) or version_of(created, None)))
        except ControlError as exc:
            self.engine.release(subscription)
            log.warning("the group's run-time subscription %s does not run on this member: %s", name, exc)
            return False
        self.created_at[name] = created
        return True

    def _forget(self, name: str) -> None:
        """Dropped in the group while this member was down (a newer tombstone): dropped here too."""
        try:
            self.store.remove(name)
        except OSError as exc:
            log.error("run-time subscription %s was dropped in the group, but %s cannot be written (%s); it runs",
                      name, self.store.path, exc)
            return
        if name in self.engine.subscriptions:
            self.engine.remove(name)
        self.engine.pending.pop(name, None)
        self.limits.forget(name)
        self.created_at.pop(name, None)
        self.dropped(name)
        log.info("run-time subscription %s dropped: the group dropped it while this member was away", name)
