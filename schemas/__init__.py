"""Dataset schemas: the declarative description that drives every job.

The YAML files beside this module describe the bundled and reference datasets;
``load_schema`` reads any such file into the types of ``schemas.types``.
"""
from importlib import resources

from ctrflow.schemas.loader import SchemaError, load_schema, loads_schema, parse_schema
from ctrflow.schemas.types import MISSING_TOKEN, Column, Cross, InputFormat, Schema


def bundled_schema_path(name: str) -> str:
    """Path of a schema shipped with ctrflow (``census``, ``criteo``), from a checkout or a wheel."""
    path = resources.files("ctrflow.schemas") / f"{name}.yaml"
    if not path.is_file():
        raise SchemaError(f"no bundled schema named {name!r}")
    return str(path)


__all__ = ["bundled_schema_path", "SchemaError", "load_schema", "loads_schema", "parse_schema", "Schema", "Column",
           "Cross", "InputFormat", "MISSING_TOKEN"]
