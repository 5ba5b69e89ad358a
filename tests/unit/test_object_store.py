"""GCS and Azure targets of `[archive] upload`: URL forms, which keys go with which store (one-line config
errors), and how [archive] and the AZURE_STORAGE_* environment become a pyarrow filesystem."""

from __future__ import annotations

import pytest
from pyarrow import fs

from arros_mqtt.config import ArchiveConfig, parse_config
from arros_mqtt.core.errors import ConfigError, UserError
from arros_mqtt.core.object_url import ObjectUrl, parse_object_url
from arros_mqtt.egress.object_store import AZURITE_KEY, connection_string, open_store


def archive(**keys) -> ArchiveConfig:
    return parse_config({"archive": keys}, "a.toml").archive


def test_url_forms():
    assert parse_object_url("gs://bucket/site-7/") == ObjectUrl("gs", "bucket/site-7")
    assert parse_object_url("gcs://bucket") == ObjectUrl("gs", "bucket")
    assert parse_object_url("az://archive/site-7") == ObjectUrl("az", "archive/site-7")
    assert parse_object_url("abfs://archive/a/b") == ObjectUrl("az", "archive/a/b")
    assert parse_object_url("abfss://archive@acct.dfs.core.windows.net/p") == ObjectUrl("az", "archive/p", "acct")
    for bad in ["gs://", "file:///tmp/x", "gs://b@acct/p", "az://c@acct.example.com/p", "gs://b/a//c", "gs://b/../x",
                "s3://b/p?x=1", "az://c:10000/p"]:
        with pytest.raises(ValueError):
            parse_object_url(bad)


def test_the_keys_of_each_store():
    gcs = archive(upload="gs://b/p", endpoint_override="http://127.0.0.1:4443", anonymous=True, keep_local=False)
    assert (gcs.upload, gcs.endpoint_override, gcs.anonymous, gcs.keep_local) == (
        "gs://b/p", "http://127.0.0.1:4443", True, False)
    az = archive(upload="az://c/p", account_name="acct", account_key="a2V5")
    assert (az.account_name, az.account_key, az.sas_token) == ("acct", "a2V5", None)
    for bad, message in [
        ({"upload": "gs://b", "region": "eu"}, r"archive\.region: applies only to s3:// uploads, not 'gs://b'"),
        ({"upload": "gs://b", "account_key": "k"}, r"archive\.account_key: applies only to az:// uploads"),
        ({"upload": "az://c", "anonymous": True}, r"archive\.anonymous: applies only to s3:// and gs:// uploads"),
        ({"upload": "az://c", "account_key": "k", "sas_token": "s"}, r"archive\.sas_token: give account_key or"),
        ({"upload": "gs://b", "endpoint_override": "ftp://x"}, r"archive\.endpoint_override: expected"),
        ({"upload": "gs://b", "endpoint_override": "http://h:1/path"}, r"archive\.endpoint_override: expected"),
        ({"upload": "az://"}, r"archive\.upload: expected \"s3://bucket/prefix\", \"gs://"),
        ({"account_name": "acct"}, r"archive\.account_name: applies only with upload"),
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            parse_config({"archive": bad}, "a.toml")
        assert "\n" not in str(caught.value)


def test_azure_account_and_key_from_the_environment():
    config = archive(upload="az://c/p")
    with pytest.raises(UserError, match="no storage account: set \\[archive\\] account_name") as caught:
        open_store("az://c/p", config, environ={})
    assert "\n" not in str(caught.value)
    filesystem, target = open_store("az://c/p", config, environ={"AZURE_STORAGE_ACCOUNT_NAME": "acct",
                                                                 "AZURE_STORAGE_ACCOUNT_KEY": "a2V5"})
    assert isinstance(filesystem, fs.AzureFileSystem) and target.root == "c/p"
    filesystem, _ = open_store("az://c@acct.dfs.core.windows.net/p", config, environ={})
    assert isinstance(filesystem, fs.AzureFileSystem)  # the account from the URL, DefaultAzureCredential


def test_connection_strings():
    azurite = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + AZURITE_KEY +
               ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
    assert connection_string(azurite) == {"account": "devstoreaccount1", "key": AZURITE_KEY, "scheme": "http",
                                          "blob": "127.0.0.1:10000"}
    assert connection_string("UseDevelopmentStorage=true")["blob"] == "127.0.0.1:10000"
    cloud = connection_string("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
                              "EndpointSuffix=core.chinacloudapi.cn")
    assert (cloud["blob"], cloud["dfs"], cloud["scheme"]) == (".blob.core.chinacloudapi.cn",
                                                              ".dfs.core.chinacloudapi.cn", "https")
    sas = connection_string("BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=1&sig=x")
    assert (sas["blob"], sas["sas"]) == ("acct.blob.core.windows.net", "sv=1&sig=x")  # no AccountName to strip
    filesystem, _ = open_store("az://c/p", archive(upload="az://c/p"),
                               environ={"AZURE_STORAGE_CONNECTION_STRING": azurite})
    assert isinstance(filesystem, fs.AzureFileSystem)


def test_gcs_and_s3_filesystems():
    filesystem, target = open_store("gs://b/p", archive(upload="gs://b/p", anonymous=True,
                                                        endpoint_override="http://127.0.0.1:4443"))
    assert isinstance(filesystem, fs.GcsFileSystem) and target.display == "gs://b/p"
    filesystem, _ = open_store("s3://b/p", archive(upload="s3://b/p", anonymous=True))
    assert isinstance(filesystem, fs.S3FileSystem)
    with pytest.raises(UserError, match="expected"):
        open_store("ftp://b/p", archive())
