"""Scores into a BigQuery date partition, only after the run's checks passed.

Writing ``table$YYYYMMDD`` from inside the pipeline would replace the day's
scores before the job knows whether too many rows were rejected. So the job
writes its Parquet files first (they stay in the run's folder as the record of
what was loaded) and, once ``--max-rejected-fraction`` and the row counts
passed, ``replace_partition``:

1. loads the files into a run-private staging table ``<table>__ctrflow_<run id>``;
2. copies the staging table over ``table$YYYYMMDD`` with WRITE_TRUNCATE: one
   job, so readers see the old day or the new day;
3. deletes the staging table (also when a step fails).

The table is created day-partitioned on ``scoring_date`` if it does not exist.
Everything goes through ``client()``, the one boundary tests replace.
"""
from __future__ import annotations

import logging
import re

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

log = logging.getLogger(__name__)

_BQ_TYPES = {pa.int64(): "INT64", pa.float64(): "FLOAT64", pa.float32(): "FLOAT64", pa.string(): "STRING",
             pa.date32(): "DATE"}
_REQUIRED = ("score", "model_version", "scoring_date")
_TABLE = re.compile(r"^(?:(?P<project>[A-Za-z0-9_-]+)[:.])?(?P<dataset>[A-Za-z0-9_]+)\.(?P<table>[A-Za-z0-9_-]+)$")


def client(project: str | None):
    """The BigQuery client (``google.cloud.bigquery``); tests replace this function."""
    from google.cloud import bigquery

    return bigquery.Client(project=project)


def bigquery_schema(schema: pa.Schema) -> dict:
    return {"fields": [{"name": f.name, "type": _BQ_TYPES.get(f.type, "STRING"),
                        "mode": "REQUIRED" if f.name in _REQUIRED else "NULLABLE"} for f in schema]}


def bigquery_partition(table: str, date: str) -> str:
    """``project:dataset.table`` -> its date partition ``project:dataset.table$YYYYMMDD``."""
    if "$" in table:
        raise ValueError(f"--output-table {table}: give the table without a partition decorator")
    if not _TABLE.match(table):
        raise ValueError(f"--output-table {table}: expected PROJECT:DATASET.TABLE or DATASET.TABLE")
    return f"{table}${date.replace('-', '')}"


def _table_id(table: str) -> str:
    """``project:dataset.table`` -> the client's ``project.dataset.table``."""
    return table.replace(":", ".", 1)


def replace_partition(table: str, date: str, files: list[str], schema: pa.Schema, run_id: str) -> dict:
    """Loads ``files`` (Parquet) and swaps them in as ``table$YYYYMMDD``; returns what was done."""
    from google.cloud import bigquery

    partition = bigquery_partition(table, date)
    project = _TABLE.match(table).group("project")
    bq = client(project)
    fields = [bigquery.SchemaField(f["name"], f["type"], mode=f["mode"]) for f in bigquery_schema(schema)["fields"]]
    target = bigquery.Table(_table_id(table), schema=fields)
    target.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY,
                                                         field="scoring_date")
    bq.create_table(target, exists_ok=True)
    staging = _table_id(table) + "__ctrflow_" + re.sub(r"[^A-Za-z0-9_]", "_", run_id)
    try:
        remote = [f for f in files if f.startswith("gs://")]
        local = [f for f in files if not f.startswith("gs://")]
        for i, group in enumerate([remote] if remote else []):
            bq.load_table_from_uri(group, staging, job_config=_load_config(fields, first=i == 0)).result()
        for i, path in enumerate(local):
            with FileSystems.open(path) as f:
                bq.load_table_from_file(f, staging, job_config=_load_config(fields, first=not remote and i == 0)
                                        ).result()
        if not files:  # an empty day still replaces the partition (with no rows)
            bq.create_table(bigquery.Table(staging, schema=fields), exists_ok=True)
        copy = bigquery.CopyJobConfig(write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE)
        bq.copy_table(staging, _table_id(partition), job_config=copy).result()
    finally:
        bq.delete_table(staging, not_found_ok=True)
    log.info("[%s] replaced BigQuery partition %s from %d files", date, partition, len(files))
    return {"partition": partition, "files": len(files), "staging_table": staging}


def _load_config(fields, first: bool):
    from google.cloud import bigquery

    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET, schema=fields,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE if first
        else bigquery.WriteDisposition.WRITE_APPEND)
