"""The catalogue commands (GetCatalogs, GetDbSchemas, GetTables, GetTableTypes) as Arrow tables in the
schemas Flight SQL prescribes, read from the request context's information schema."""

from __future__ import annotations

import pyarrow as pa
from datafusion import SessionContext

from arros_mqtt.query import plain_schema
from arros_mqtt.vendor import FlightSql_pb2 as sql

HIDDEN_SCHEMA = "information_schema"  # queryable, but not listed: clients show the data, not DataFusion's views
TABLE_TYPES = ["TABLE", "VIEW"]
_TYPE_OF = {"BASE TABLE": "TABLE", "VIEW": "VIEW"}

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.string(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema([pa.field("catalog_name", pa.string()),
                               pa.field("db_schema_name", pa.string(), nullable=False)])
TABLES_SCHEMA = pa.schema([pa.field("catalog_name", pa.string()), pa.field("db_schema_name", pa.string()),
                           pa.field("table_name", pa.string(), nullable=False),
                           pa.field("table_type", pa.string(), nullable=False)])
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.string(), nullable=False)])


def catalogs(ctx: SessionContext) -> pa.Table:
    return pa.table({"catalog_name": sorted(ctx.catalog_names())}, schema=CATALOGS_SCHEMA)


def db_schemas(ctx: SessionContext, command: sql.CommandGetDbSchemas) -> pa.Table:
    where = _filters(command, ("catalog", "table_catalog"), ("db_schema_filter_pattern", "schema_name"))
    rows = ctx.sql("SELECT catalog_name, schema_name FROM information_schema.schemata "
                   f"WHERE schema_name <> '{HIDDEN_SCHEMA}'{where} ORDER BY 1, 2").to_arrow_table()
    return pa.Table.from_arrays(rows.columns, schema=DB_SCHEMAS_SCHEMA)


def tables(ctx: SessionContext, command: sql.CommandGetTables) -> pa.Table:
    where = _filters(command, ("catalog", "table_catalog"), ("db_schema_filter_pattern", "table_schema"),
                     ("table_name_filter_pattern", "table_name"))
    rows = ctx.sql("SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables "
                   f"WHERE table_schema <> '{HIDDEN_SCHEMA}'{where} ORDER BY 1, 2, 3").to_pylist()
    for row in rows:
        row["table_type"] = _TYPE_OF.get(row["table_type"], row["table_type"])
    wanted = set(command.table_types)
    rows = [row for row in rows if not wanted or row["table_type"] in wanted]
    columns = {"catalog_name": [r["table_catalog"] for r in rows], "db_schema_name": [r["table_schema"] for r in rows],
               "table_name": [r["table_name"] for r in rows], "table_type": [r["table_type"] for r in rows]}
    if not command.include_schema:
        return pa.table(columns, schema=TABLES_SCHEMA)
    columns["table_schema"] = [_schema_bytes(ctx, r) for r in rows]
    return pa.table(columns, schema=TABLES_WITH_SCHEMA)


def table_types() -> pa.Table:
    return pa.table({"table_type": TABLE_TYPES}, schema=TABLE_TYPES_SCHEMA)


def _schema_bytes(ctx: SessionContext, row: dict) -> bytes:
    """The table's Arrow schema as an IPC message, as Flight SQL carries schemas."""
    qualified = f'"{row["table_catalog"]}"."{row["table_schema"]}"."{row["table_name"]}"'
    return plain_schema(ctx.sql(f"SELECT * FROM {qualified} LIMIT 0").schema()).serialize().to_pybytes()


def _filters(command, *fields: tuple[str, str]) -> str:
    """` AND column = / LIKE 'value'` for each filter the command sets (LIKE for `*_pattern` fields)."""
    where = ""
    for field, column in fields:
        if not command.HasField(field):
            continue
        value = getattr(command, field).replace("'", "''")
        where += f" AND {column} {'LIKE' if field.endswith('_pattern') else '='} '{value}'"
    return where
