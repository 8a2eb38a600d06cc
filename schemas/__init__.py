"""Dataset schemas: the declarative description that drives every job.

The YAML files beside this module describe the bundled and reference datasets;
``load_schema`` reads any such file into the types of ``schemas.types``.
"""
from schemas.loader import SchemaError, load_schema, loads_schema, parse_schema
from schemas.types import MISSING_TOKEN, Column, Cross, InputFormat, Schema

__all__ = ["SchemaError", "load_schema", "loads_schema", "parse_schema", "Schema", "Column", "Cross",
           "InputFormat", "MISSING_TOKEN"]
