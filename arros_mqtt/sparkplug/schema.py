"""The fixed columns of a `format = "sparkplug"` stream (SPEC section 5) and Sparkplug type names.

One row per metric. Topic captures, `_topic` and `_received_at` follow these columns, as in any
stream.
"""

from __future__ import annotations

import pyarrow as pa

SPARKPLUG_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("edge_node_id", pa.string()),
    ("device_id", pa.string()),  # null for node-level metrics
    ("message_type", pa.string()),  # NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH
    ("seq", pa.int64()),
    ("metric", pa.string()),  # the name, also when the message carried only the alias
    ("alias", pa.uint64()),
    ("timestamp", pa.timestamp("ms", tz="UTC")),  # the metric's, else the payload's
    ("datatype", pa.string()),  # Sparkplug type name, e.g. "Double"
    ("is_null", pa.bool_()),
    ("quality", pa.int32()),  # the metric's "Quality" property, if any
    ("value_double", pa.float64()),
    ("value_int", pa.int64()),
    ("value_bool", pa.bool_()),
    ("value_string", pa.string()),
])

# Sparkplug 3.0 DataType codes (specification section 6.4.16) -> names.
DATATYPE_NAMES = (
    "Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float", "Double",
    "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes", "File", "Template", "PropertySet",
    "PropertySetList", "Int8Array", "Int16Array", "Int32Array", "Int64Array", "UInt8Array", "UInt16Array",
    "UInt32Array", "UInt64Array", "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
)
