"""Protocol definitions taken from upstream projects, with the code protoc generated from them.

`sparkplug_b.proto` is Eclipse Tahu's; regenerate `sparkplug_b_pb2.py` with `make sparkplug-proto`.
`FlightSql.proto` is the Apache Arrow project's (format/FlightSql.proto, Apache-2.0, the revision that
flightsql-dbapi 0.2.2 on PyPI ships); regenerate `FlightSql_pb2.py` with `make flight-sql-proto`.
"""
