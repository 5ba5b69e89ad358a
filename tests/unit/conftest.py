"""Unit tests run in-process: no broker, no subprocess, no network. A unit test that opens a socket or
starts a process fails here and belongs in tests/integration (docs/development.md)."""

from __future__ import annotations

import socket
import subprocess

import pytest


def _refuse(what: str):
    def refused(*_args, **_kwargs):
        raise AssertionError(f"a unit test must not {what}: move it to tests/integration")

    return refused


@pytest.fixture(autouse=True)
def _in_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse("connect a socket"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse("connect a socket"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("bind a socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
