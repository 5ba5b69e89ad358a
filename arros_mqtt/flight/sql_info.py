"""GetSqlInfo: what a JDBC/ODBC-style client asks about the server before it shows the catalogue.

The result schema is Flight SQL's: `info_name` uint32 and a dense union of the value kinds.
"""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt import __version__
from arros_mqtt.vendor import FlightSql_pb2 as sql

_STRING, _BOOL, _BIGINT, _INT32, _STRING_LIST = 0, 1, 2, 3, 4
VALUE_TYPE = pa.union([
    pa.field("string_value", pa.string()),
    pa.field("bool_value", pa.bool_()),
    pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()),
    pa.field("string_list", pa.list_(pa.field("item", pa.string()))),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.field("item", pa.int32())))),
], mode="dense")
SCHEMA = pa.schema([pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", VALUE_TYPE, nullable=False)])
_KEYWORDS = ["ABSOLUTE", "ACTION", "ANALYZE", "ASOF", "EXPLAIN", "QUALIFY", "UNNEST", "WINDOW"]


def _info() -> dict[int, tuple[int, object]]:
    """Each answer as (union member, value); enums as int32 (their union member in Flight SQL)."""
    code = sql.SqlInfo.Value
    no_transactions = sql.SqlSupportedTransaction.Value("SQL_SUPPORTED_TRANSACTION_NONE")
    return {
        code("FLIGHT_SQL_SERVER_NAME"): (_STRING, "Arros MQTT"),
        code("FLIGHT_SQL_SERVER_VERSION"): (_STRING, __version__),
        code("FLIGHT_SQL_SERVER_ARROW_VERSION"): (_STRING, pa.__version__),
        code("FLIGHT_SQL_SERVER_READ_ONLY"): (_BOOL, True),
        code("FLIGHT_SQL_SERVER_SQL"): (_BOOL, True),
        code("FLIGHT_SQL_SERVER_SUBSTRAIT"): (_BOOL, False),
        code("FLIGHT_SQL_SERVER_TRANSACTION"): (_INT32, no_transactions),
        code("FLIGHT_SQL_SERVER_CANCEL"): (_BOOL, True),
        code("FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT"): (_INT32, 0),
        code("FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT"): (_INT32, 0),
        code("SQL_DDL_CATALOG"): (_BOOL, False),
        code("SQL_DDL_SCHEMA"): (_BOOL, False),
        code("SQL_DDL_TABLE"): (_BOOL, False),
        # DataFusion folds unquoted names to lower case; quoted ones are taken as written
        code("SQL_IDENTIFIER_CASE"): (_INT32, sql.SqlSupportedCaseSensitivity.Value("SQL_CASE_SENSITIVITY_LOWERCASE")),
        code("SQL_IDENTIFIER_QUOTE_CHAR"): (_STRING, '"'),
        code("SQL_QUOTED_IDENTIFIER_CASE"): (_INT32,
                                             sql.SqlSupportedCaseSensitivity.Value("SQL_CASE_SENSITIVITY_UNKNOWN")),
        code("SQL_ALL_TABLES_ARE_SELECTABLE"): (_BOOL, True),
        code("SQL_NULL_ORDERING"): (_INT32, sql.SqlNullOrdering.Value("SQL_NULLS_SORTED_HIGH")),
        code("SQL_KEYWORDS"): (_STRING_LIST, _KEYWORDS),
        code("SQL_SEARCH_STRING_ESCAPE"): (_STRING, "\\"),
        code("SQL_EXTRA_NAME_CHARACTERS"): (_STRING, ""),
        code("SQL_SUPPORTS_COLUMN_ALIASING"): (_BOOL, True),
        code("SQL_NULL_PLUS_NULL_IS_NULL"): (_BOOL, True),
        code("SQL_SUPPORTS_TABLE_CORRELATION_NAMES"): (_BOOL, True),
        code("SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY"): (_BOOL, True),
        code("SQL_SUPPORTS_ORDER_BY_UNRELATED"): (_BOOL, True),
        code("SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE"): (_BOOL, False),
        code("SQL_SUPPORTS_NON_NULLABLE_COLUMNS"): (_BOOL, True),
        code("SQL_SCHEMA_TERM"): (_STRING, "schema"),
        code("SQL_CATALOG_TERM"): (_STRING, "catalog"),
        code("SQL_CATALOG_AT_START"): (_BOOL, True),
        code("SQL_SELECT_FOR_UPDATE_SUPPORTED"): (_BOOL, False),
        code("SQL_STORED_PROCEDURES_SUPPORTED"): (_BOOL, False),
        code("SQL_CORRELATED_SUBQUERIES_SUPPORTED"): (_BOOL, True),
        code("SQL_TRANSACTIONS_SUPPORTED"): (_BOOL, False),
    }


def sql_info_table(wanted: list[int]) -> pa.Table:
    """The answers to `wanted` (every answer when empty); codes this server does not know are left out."""
    info = _info()
    codes = [c for c in wanted if c in info] if wanted else sorted(info)
    children: list[list] = [[] for _ in VALUE_TYPE]
    types, offsets = [], []
    for c in codes:
        member, value = info[c]
        types.append(member)
        offsets.append(len(children[member]))
        children[member].append(value)
    arrays = [pa.array(values, type=field.type) for values, field in zip(children, VALUE_TYPE, strict=True)]
    value = pa.UnionArray.from_dense(pa.array(types, pa.int8()), pa.array(offsets, pa.int32()), arrays,
                                     [f.name for f in VALUE_TYPE])
    return pa.Table.from_arrays([pa.array(codes, pa.uint32()), value], schema=SCHEMA)
