"""`[uplinks.NAME]` and the `[archive]` upload keys: defaults, and one clear error per bad value."""

from __future__ import annotations

import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.ops.health import HealthSources
from arros_mqtt.ops.metrics import uplink_metrics


def uplink(**keys):
    return parse_config({"uplinks": {"cloud": {"url": "mqtt://cloud.example:1883", "topics": ["derived/#"], **keys}}},
                        "a.toml").uplinks["cloud"]


def test_defaults_and_credentials_from_the_url():
    config = uplink(url="mqtts://site:secret@cloud.example", prefix="site-7", buffer="1MiB", max_rate=50)
    assert (config.qos, config.when_full, config.buffer, config.max_rate) == (1, "drop_oldest", 1 << 20, 50.0)
    assert config.broker.tls and config.broker.port == 8883 and config.broker.username == "site"
    assert config.broker.client_id.endswith("-uplink-cloud")
    assert uplink().buffer == 2 * 1024**3
    assert (config.batch, config.batch_max_messages, config.batch_max_delay) == ("none", 100, 1.0)
    batched = uplink(batch="arrow", batch_max_messages=500, batch_max_delay="250ms")
    assert (batched.batch, batched.batch_max_messages, batched.batch_max_delay) == ("arrow", 500, 0.25)


@pytest.mark.parametrize(("keys", "message"), [
    ({"url": "http://x"}, "uplinks.cloud.url: unsupported broker URL"),
    ({"topics": []}, "uplinks.cloud.topics: expected a non-empty array"),
    ({"topics": ["a/#/b"]}, "uplinks.cloud.topics: invalid topic filter 'a/#/b'"),
    ({"qos": 3}, "uplinks.cloud.qos: must be 0, 1 or 2"),
    ({"buffer": "1KB"}, "uplinks.cloud.buffer: must be at least 64KiB"),
    ({"when_full": "block"}, "uplinks.cloud.when_full: expected \"drop_oldest\" or \"stop\""),
    ({"max_rate": -1}, "uplinks.cloud.max_rate: must be at least 0"),
    ({"prefix": "a/#"}, "uplinks.cloud.prefix: invalid topic prefix"),
    ({"tls_cert": "/nonexistent.pem"}, "uplinks.cloud.tls_cert: file '/nonexistent.pem' not found"),
    ({"speed": 1}, "uplinks.cloud.speed: unknown key"),
    ({"batch": "csv"}, "uplinks.cloud.batch: expected \"none\", \"json\" or \"arrow\", got 'csv'"),
    ({"batch_max_messages": 0}, "uplinks.cloud.batch_max_messages: must be 1 to 10000, got 0"),
    ({"batch_max_delay": "2h"}, "uplinks.cloud.batch_max_delay: must be 0 to 1h"),
])
def test_bad_uplinks_name_the_key(keys, message):
    with pytest.raises(ConfigError, match="^a.toml: " + message.replace("(", r"\(").replace("[", r"\[")):
        uplink(**keys)


def test_the_url_is_required():
    with pytest.raises(ConfigError, match=r"uplinks\.cloud\.url: is required"):
        parse_config({"uplinks": {"cloud": {"topics": ["x"]}}})


def test_archive_upload_keys():
    archive = parse_config({"archive": {"upload": "s3://bucket/site", "endpoint_override": "http://127.0.0.1:9000",
                                        "keep_local": False}}).archive
    assert (archive.upload, archive.endpoint_override, archive.keep_local) == ("s3://bucket/site",
                                                                               "http://127.0.0.1:9000", False)
    for bad, message in [({"upload": "ftp://b"}, "archive.upload: expected"),
                         ({"keep_local": False}, "archive.keep_local: applies only with upload"),
                         ({"upload": "s3://b", "access_key": "k"}, "archive.access_key: access_key and secret_key")]:
        with pytest.raises(ConfigError, match=message):
            parse_config({"archive": bad})


def test_uplink_metrics_are_labelled_by_uplink():
    state = {"connected": True, "buffered_messages": 3, "buffered_bytes": 300, "oldest_seconds": 1.5,
             "dropped": 2, "sent": 10}
    sources = HealthSources(buffer=None, log=None, ledger=None, archive_failed_seq=lambda: None, receiving=None,
                            uplinks=lambda: {"cloud": state})
    values = {(sample.name, sample.labels["uplink"]): sample.value for family in uplink_metrics(sources)
              for sample in family.samples}
    assert values[("arros_uplink_buffered_messages", "cloud")] == 3
    assert values[("arros_uplink_dropped_total", "cloud")] == 2
    assert values[("arros_uplink_connected", "cloud")] == 1


def test_a_cluster_group_refuses_uplinks():
    from arros_mqtt.config import check_cluster

    config = parse_config({"broker": {"url": "mqtt://127.0.0.1:1883"}, "cluster": {"group": "g"},
                           "uplinks": {"cloud": {"url": "mqtt://cloud:1883", "topics": ["derived/#"]}}}, "a.toml")
    with pytest.raises(ConfigError, match=r"^a.toml: uplinks\.cloud: uplinks do not run in a \[cluster\] group"):
        check_cluster(config)
