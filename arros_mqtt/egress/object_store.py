"""`[archive]` -> a `pyarrow.fs` FileSystem and root path, for the uploader and `arros query --archive` alike.

S3 (AWS or S3-compatible), Google Cloud Storage and Azure Blob Storage, each through pyarrow's own
filesystem, so DuckDB, Spark and pyarrow read the same objects. Credentials come from `[archive]` or the
standard environment: the AWS chain (pyarrow), GOOGLE_APPLICATION_CREDENTIALS and Google's default
credentials (pyarrow), and for Azure AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_NAME,
AZURE_STORAGE_ACCOUNT_KEY and AZURE_STORAGE_SAS_TOKEN (read here: pyarrow takes none of them), then
pyarrow's DefaultAzureCredential (managed identity, AZURE_CLIENT_ID/SECRET/TENANT_ID).

The calls are bounded so an unreachable store fails in seconds and the uploader can retry: S3 3 s to
connect and 2 attempts, GCS 5 s of retries; Azure's client gives up after its own 3 retries (~6 s).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from pyarrow import fs

from arros_mqtt.config import ArchiveConfig
from arros_mqtt.core.errors import UserError
from arros_mqtt.core.object_url import ObjectUrl, parse_object_url

AZURITE_ACCOUNT = "devstoreaccount1"  # `UseDevelopmentStorage=true`: the emulator's documented account and key
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def open_store(url: str, archive: ArchiveConfig,
               environ: Mapping[str, str] | None = None) -> tuple[fs.FileSystem, ObjectUrl]:
    """The filesystem of `url` with the options of `archive`; UserError (one line) when it cannot be made."""
    try:
        target = parse_object_url(url)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    environ = os.environ if environ is None else environ
    try:
        if target.kind == "s3":
            return s3_filesystem(archive), target
        if target.kind == "gs":
            return gcs_filesystem(archive), target
        return azure_filesystem(archive, target, environ), target
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{target.display}: {str(exc).splitlines()[0]}") from None


def publish(filesystem: fs.FileSystem, temporary: str, key: str) -> None:
    """Make the complete object `temporary` visible as `key`, whole: a move (S3 and GCS copy on the server,
    then delete), or on Azure without a hierarchical namespace, where pyarrow has no move, a server-side copy
    then a delete. A crash in between leaves only the `.uploading` object, which readers skip."""
    if isinstance(filesystem, fs.AzureFileSystem):
        try:
            filesystem.move(temporary, key)
            return
        except NotImplementedError:
            filesystem.copy_file(temporary, key)
            filesystem.delete_file(temporary)
            return
    filesystem.move(temporary, key)


def _endpoint(value: str) -> tuple[str, str]:
    """`http://host:port` or `host:port` -> (scheme, host:port); https when no scheme is given."""
    parts = urlsplit(value if "://" in value else f"https://{value}")
    return parts.scheme, parts.netloc


def s3_filesystem(archive: ArchiveConfig) -> fs.S3FileSystem:
    """Explicit keys, anonymous, or the standard AWS credential chain."""
    options: dict = {"connect_timeout": 3.0, "request_timeout": 30.0,
                     "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=2)}
    if archive.endpoint_override:
        options["scheme"], options["endpoint_override"] = _endpoint(archive.endpoint_override)
    if archive.region:
        options["region"] = archive.region
    if archive.access_key is not None:
        options["access_key"], options["secret_key"] = archive.access_key, archive.secret_key
    if archive.anonymous:
        options["anonymous"] = True
    return fs.S3FileSystem(**options)


def gcs_filesystem(archive: ArchiveConfig) -> fs.GcsFileSystem:
    """Anonymous, or Google's default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata server)."""
    options: dict = {"anonymous": archive.anonymous, "retry_time_limit": dt.timedelta(seconds=5)}
    if archive.endpoint_override:
        options["scheme"], options["endpoint_override"] = _endpoint(archive.endpoint_override)
    return fs.GcsFileSystem(**options)


def azure_filesystem(archive: ArchiveConfig, target: ObjectUrl, environ: Mapping[str, str]) -> fs.AzureFileSystem:
    """Account and key (or SAS token) from [archive], the URL's @ACCOUNT or the AZURE_STORAGE_* environment."""
    conn = connection_string(environ.get("AZURE_STORAGE_CONNECTION_STRING", ""))
    account = archive.account_name or target.account or conn.get("account") or environ.get(
        "AZURE_STORAGE_ACCOUNT_NAME")
    if not account:
        raise UserError(f"{target.display}: no storage account: set [archive] account_name, write "
                        "az://container@ACCOUNT.dfs.core.windows.net/prefix, or set AZURE_STORAGE_ACCOUNT_NAME "
                        "or AZURE_STORAGE_CONNECTION_STRING")
    options: dict = {"account_name": account}
    from_conn = conn.get("account") == account
    if archive.account_key is not None or archive.sas_token is not None:
        key, sas = archive.account_key, archive.sas_token
    elif from_conn and (conn.get("key") or conn.get("sas")):
        key, sas = conn.get("key"), conn.get("sas")
    else:
        key, sas = environ.get("AZURE_STORAGE_ACCOUNT_KEY"), environ.get("AZURE_STORAGE_SAS_TOKEN")
        if key and sas:
            sas = None  # pyarrow takes one of them; the key is the wider
    if key:
        options["account_key"] = key
    elif sas:
        options["sas_token"] = sas.lstrip("?")
    if archive.endpoint_override:
        scheme, authority = _endpoint(archive.endpoint_override)
        blob = dfs = authority
    elif from_conn and "blob" in conn:
        scheme, blob, dfs = conn["scheme"], conn["blob"], conn.get("dfs", conn["blob"])
    else:
        return fs.AzureFileSystem(**options)
    options.update(blob_storage_authority=blob, blob_storage_scheme=scheme,
                   dfs_storage_authority=dfs, dfs_storage_scheme=scheme)
    return fs.AzureFileSystem(**options)


def connection_string(text: str) -> dict[str, str]:
    """The parts of an Azure Storage connection string pyarrow can use: account, key or sas, and the
    endpoint as scheme plus authority (`host:port`, addressed path-style like Azurite, or `.blob.SUFFIX`,
    which pyarrow puts after the account name)."""
    fields = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return {"account": AZURITE_ACCOUNT, "key": AZURITE_KEY, "scheme": "http", "blob": "127.0.0.1:10000"}
    out = {"account": fields.get("accountname", ""), "key": fields.get("accountkey", ""),
           "sas": fields.get("sharedaccesssignature", "")}
    out = {name: value for name, value in out.items() if value}
    if endpoint := fields.get("blobendpoint"):
        parts = urlsplit(endpoint)
        account = out.get("account", "")
        host = parts.netloc
        out["scheme"] = parts.scheme or "https"
        out["blob"] = host[len(account):] if account and host.startswith(account + ".") else host
        if "blob" in out and out["blob"].startswith(".blob."):
            out["dfs"] = ".dfs." + out["blob"][len(".blob."):]
    elif suffix := fields.get("endpointsuffix"):
        out["scheme"] = fields.get("defaultendpointsprotocol", "https")
        out["blob"], out["dfs"] = f".blob.{suffix}", f".dfs.{suffix}"
    return out
