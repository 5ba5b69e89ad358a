"""Sparkplug B type names: the `datatype` column of a sparkplug stream (`config.SPARKPLUG_SCHEMA`)."""

from __future__ import annotations

# Sparkplug 3.0 DataType codes (specification section 6.4.16) -> names.
DATATYPE_NAMES = (
    "Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float", "Double",
    "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes", "File", "Template", "PropertySet",
    "PropertySetList", "Int8Array", "Int16Array", "Int32Array", "Int64Array", "UInt8Array", "UInt16Array",
    "UInt32Array", "UInt64Array", "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
)
