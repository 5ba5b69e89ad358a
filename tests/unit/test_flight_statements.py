"""The Flight SQL server's statement state: prepared handles, tickets, cancel flags; bounded."""

from __future__ import annotations

import pytest

from arros_mqtt.flight import statements
from arros_mqtt.flight.commands import UnknownCommand, pack, unpack
from arros_mqtt.flight.statements import Statements, read_handle, ticket_handle
from arros_mqtt.vendor import FlightSql_pb2 as sql


def test_prepared_statements_are_kept_until_closed_and_bounded(monkeypatch):
    monkeypatch.setattr(statements, "MAX_PREPARED", 3)
    state = Statements()
    handles = [state.prepare(f"SELECT {i}") for i in range(4)]
    assert state.prepared_sql(handles[3]) == "SELECT 3"
    with pytest.raises(KeyError):
        state.prepared_sql(handles[0])  # the oldest went past the bound
    state.close(handles[3])
    with pytest.raises(KeyError):
        state.prepared_sql(handles[3])


def test_a_ticket_carries_its_query_and_a_foreign_one_is_refused():
    query_id, handle = ticket_handle("SELECT 1")
    assert read_handle(handle) == (query_id, "SELECT 1")
    for foreign in (b"", b"{}", b"[1]", b"\xff"):
        with pytest.raises(ValueError):
            read_handle(foreign)


def test_cancel_before_and_during_the_stream():
    state = Statements()
    state.keep_planned("early", object())
    assert state.cancel("early") and state.take_planned("early") is None
    assert state.start("early").is_set()  # its DoGet, coming after the cancel, streams nothing
    state.finish("early")
    flag = state.start("running")
    assert not flag.is_set() and state.streaming == 1
    assert state.cancel("running") and flag.is_set()
    state.finish("running")
    assert state.streaming == 0 and not state.cancel("unknown")


def test_commands_round_trip_and_foreign_messages_are_refused():
    command = unpack(pack(sql.CommandStatementQuery(query="SELECT 1")))
    assert isinstance(command, sql.CommandStatementQuery) and command.query == "SELECT 1"
    from google.protobuf import any_pb2, timestamp_pb2

    foreign = any_pb2.Any()
    foreign.Pack(timestamp_pb2.Timestamp(seconds=1))
    for data in (b"\xff\xff", foreign.SerializeToString(), b""):
        with pytest.raises(UnknownCommand):
            unpack(data)
