"""GetXdbcTypeInfo: the SQL types DataFusion offers, as JDBC's `DatabaseMetaData.getTypeInfo()` lists them."""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt.vendor import FlightSql_pb2 as sql

SCHEMA = pa.schema([
    pa.field("type_name", pa.string(), nullable=False), pa.field("data_type", pa.int32(), nullable=False),
    pa.field("column_size", pa.int32()), pa.field("literal_prefix", pa.string()),
    pa.field("literal_suffix", pa.string()),
    pa.field("create_params", pa.list_(pa.field("item", pa.string(), nullable=False))),
    pa.field("nullable", pa.int32(), nullable=False), pa.field("case_sensitive", pa.bool_(), nullable=False),
    pa.field("searchable", pa.int32(), nullable=False), pa.field("unsigned_attribute", pa.bool_()),
    pa.field("fixed_prec_scale", pa.bool_(), nullable=False), pa.field("auto_increment", pa.bool_()),
    pa.field("local_type_name", pa.string()), pa.field("minimum_scale", pa.int32()),
    pa.field("maximum_scale", pa.int32()), pa.field("sql_data_type", pa.int32(), nullable=False),
    pa.field("datetime_subcode", pa.int32()), pa.field("num_prec_radix", pa.int32()),
    pa.field("interval_precision", pa.int32()),
])
_X = sql.XdbcDataType.Value
# (type name, XDBC type, column size, literal prefix/suffix, numeric radix, datetime subcode)
_TYPES = [
    ("BOOLEAN", _X("XDBC_BIT"), 1, None, None, None),
    ("TINYINT", _X("XDBC_TINYINT"), 3, None, 10, None),
    ("SMALLINT", _X("XDBC_SMALLINT"), 5, None, 10, None),
    ("INTEGER", _X("XDBC_INTEGER"), 10, None, 10, None),
    ("BIGINT", _X("XDBC_BIGINT"), 19, None, 10, None),
    ("REAL", _X("XDBC_REAL"), 24, None, 2, None),
    ("DOUBLE", _X("XDBC_DOUBLE"), 53, None, 2, None),
    ("DECIMAL", _X("XDBC_DECIMAL"), 38, None, 10, None),
    ("VARCHAR", _X("XDBC_VARCHAR"), None, "'", None, None),
    ("BYTEA", _X("XDBC_VARBINARY"), None, None, None, None),
    ("DATE", _X("XDBC_DATE"), 10, "'", None, sql.XdbcDatetimeSubcode.Value("XDBC_SUBCODE_DATE")),
    ("TIME", _X("XDBC_TIME"), 18, "'", None, sql.XdbcDatetimeSubcode.Value("XDBC_SUBCODE_TIME")),
    ("TIMESTAMP", _X("XDBC_TIMESTAMP"), 29, "'", None, sql.XdbcDatetimeSubcode.Value("XDBC_SUBCODE_TIMESTAMP")),
]


def type_info_table(data_type: int | None) -> pa.Table:
    """Every type (or the one `data_type` asks for), ordered by data_type then name as Flight SQL asks."""
    chosen = sorted((t for t in _TYPES if data_type is None or t[1] == data_type), key=lambda t: (t[1], t[0]))
    datetime = {_X("XDBC_DATE"), _X("XDBC_TIME"), _X("XDBC_TIMESTAMP")}
    rows = [{
        "type_name": name, "data_type": code, "column_size": size, "literal_prefix": quote,
        "literal_suffix": quote, "create_params": ["precision", "scale"] if name == "DECIMAL" else None,
        "nullable": sql.Nullable.Value("NULLABILITY_NULLABLE"), "case_sensitive": name == "VARCHAR",
        "searchable": sql.Searchable.Value("SEARCHABLE_FULL"),
        "unsigned_attribute": False if radix else None, "fixed_prec_scale": False,
        "auto_increment": False if radix else None, "local_type_name": name,
        "minimum_scale": 0 if name == "DECIMAL" else None, "maximum_scale": 38 if name == "DECIMAL" else None,
        "sql_data_type": _X("XDBC_DATETIME") if code in datetime else code, "datetime_subcode": subcode,
        "num_prec_radix": radix, "interval_precision": None,
    } for name, code, size, quote, radix, subcode in chosen]
    return pa.Table.from_pylist(rows, schema=SCHEMA)
