"""Object-storage URLs of `[archive] upload` and `arros query --archive`: which store, which root path.

One parser for the config (validation) and the filesystem builder (egress/object_store.py), so a URL the
config accepts is one the uploader and the query can open:

- `s3://bucket/prefix` (AWS or S3-compatible),
- `gs://bucket/prefix` (`gcs://` too) for Google Cloud Storage,
- `az://container/prefix`, `abfs://` / `abfss://` too, optionally `container@ACCOUNT.dfs.core.windows.net`
  (or `.blob.`) naming the storage account, for Azure Blob Storage / Data Lake Gen2.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

KINDS = {"s3": "s3", "gs": "gs", "gcs": "gs", "az": "az", "abfs": "az", "abfss": "az"}
FORMS = '"s3://bucket/prefix", "gs://bucket/prefix" or "az://container/prefix"'


@dataclass(frozen=True)
class ObjectUrl:
    kind: str  # "s3", "gs" or "az"
    root: str  # "bucket/prefix" (no slash at either end): the path pyarrow.fs is given
    account: str | None = None  # Azure: the storage account named in the URL, if it is

    @property
    def display(self) -> str:
        """The URL for messages, in its short form."""
        return f"{self.kind}://{self.root}"


def parse_object_url(url: str) -> ObjectUrl:
    """`ObjectUrl` of `url`; ValueError with the reason for anything else."""
    parts = urlsplit(url)
    kind = KINDS.get(parts.scheme.lower())
    if kind is None or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected {FORMS}, got {url!r}")
    bucket, account = parts.netloc, None
    if "@" in bucket:
        if kind != "az":
            raise ValueError(f"{parts.scheme}:// takes no user@ part, got {url!r}")
        bucket, host = bucket.split("@", 1)
        account, _, suffix = host.partition(".")
        if not account or (suffix and not suffix.endswith("core.windows.net")):
            raise ValueError(f"expected container@ACCOUNT.dfs.core.windows.net, got {url!r}")
    if not bucket or ":" in bucket:
        raise ValueError(f"expected {FORMS}, got {url!r}")
    prefix = parts.path.strip("/")
    if any(segment in ("", ".", "..") for segment in prefix.split("/")) and prefix:
        raise ValueError(f"the prefix of {url!r} has an empty, '.' or '..' segment")
    return ObjectUrl(kind, f"{bucket}/{prefix}".rstrip("/"), account)
