"""``ctrflow schema infer``: a first schema for your own table, every decision commented.

Reads a sample with Arrow (the first rows of each input file, spread over the
files; a BigQuery table through the jobs' own reader), applies the rules of
``ctrflow.schemas.infer`` and writes YAML that the strict loader accepts, then
prints one line per column: role, transform, and why.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.input import bigquery
from ctrflow.beam_jobs.input.plan import match_files
from ctrflow.common.errors import OptionsError, UserError
from ctrflow.common.flags import FlagParser, build_parser, from_namespace, option
from ctrflow.schemas.infer import Inference, infer_schema, sniff_text, text_table

_PARQUET = (".parquet", ".pq")
_CHUNK = 1 << 20


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(","))


def _delimiter(text: str) -> str:
    value = {"\\t": "\t", "tab": "\t", "space": " "}.get(text, text)
    if len(value) != 1:
        raise ValueError(f"one character (or tab, space), got {text!r}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class InferOptions:
    """What to sample and where the schema goes."""

    input: tuple[str, ...] = option(help="file path or glob (local or any Beam filesystem; .gz read through), or "
                                         "bigquery://PROJECT.DATASET.TABLE; give the train and eval files alike "
                                         "so that every label spelling is seen")
    label: str = option(help="the label column (a header name, a --names name, or col<N> for a headerless file)")
    output: str = option(help="schema YAML to write")
    format: str | None = option(None, choices=("csv", "tsv", "parquet", "bigquery"),
                                help="input format (default: from the extension; text otherwise)")
    sample_rows: int = option(100_000, help="rows to read, spread over the files (the first rows of each)")
    names: tuple[str, ...] | None = option(None, parse=_comma_list, metavar="A,B,C",
                                           help="column names of a headerless text file, in file order")
    delimiter: str | None = option(None, parse=_delimiter, help="text field delimiter (default: sniffed among "
                                                                "tab , ; | space; tsv: tab)")
    header: str = option("auto", choices=("auto", "yes", "no"), help="does the first line of each text file name "
                                                                    "the columns (auto: sniffed)")
    positive: tuple[str, ...] | None = option(None, parse=_comma_list, metavar="V1,V2",
                                              help="the label's positive values (default: the rule in "
                                                   "ctrflow.schemas.infer)")
    name: str | None = option(None, help="schema name (default: the output file's name)")

    def __post_init__(self) -> None:
        if self.sample_rows < 10:
            raise OptionsError(f"--sample-rows must be >= 10, got {self.sample_rows}")


def build_arg_parser() -> FlagParser:
    return build_parser(InferOptions, "ctrflow schema infer", "Write a first schema for a table, with a comment "
                                                              "on every column saying why.")


def run(argv: list[str] | None = None) -> Inference:
    """``ctrflow schema infer ...``: the one subcommand of ``schema``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ctrflow schema infer --input PATTERN --label COL --output schema.yaml [options]\n"
              "  (ctrflow schema infer --help for the options)")
        raise SystemExit(0 if argv else 2)
    if argv[0] != "infer":
        print(f"ctrflow schema: error: unknown subcommand {argv[0]!r}; the one subcommand is infer", file=sys.stderr)
        raise SystemExit(2)
    return run_infer(from_namespace(InferOptions, build_arg_parser().parse_args(argv[1:])))


def run_infer(args: InferOptions) -> Inference:
    """Samples the input, infers, writes the schema and prints the decisions."""
    kind = args.format or _kind(args.input[0])
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    source = ", ".join(args.input)
    if kind == "bigquery":
        table = _read_bigquery(args.input, args.sample_rows)
        result = infer_schema(table, args.label, file_type="bigquery", name=name, positive=args.positive,
                              source=source)
    else:
        files = [path for path, _ in match_files(list(args.input))]
        per_file = -(-args.sample_rows // len(files))
        if kind == "parquet":
            table = _read_parquet(files, per_file)
            result = infer_schema(table, args.label, file_type="parquet", name=name, positive=args.positive,
                                  source=source)
        else:
            heads = [_read_head(path, per_file) for path in files]
            header = {"auto": None, "yes": True, "no": False}[args.header]
            layout = sniff_text(heads, delimiter="\t" if kind == "tsv" and not args.delimiter else args.delimiter,
                                header=header, names=args.names)
            table, bad = text_table(heads, layout, args.sample_rows)
            result = infer_schema(table, args.label, file_type="csv", name=name, layout=layout,
                                  positive=args.positive, source=source, rejected_lines=bad)
    with FileSystems.create(args.output) as f:
        f.write(result.text.encode("utf-8"))
    print(result.table())
    for line in result.format_why:
        print(f"format: {line}")
    print(f"wrote {args.output}: {len(result.schema.features)} features, label {result.schema.label.name!r}, "
          f"from {table.num_rows} sample rows")
    return result


def _kind(spec: str) -> str:
    if bigquery.is_bigquery(spec):
        return "bigquery"
    stem = spec[:-3] if spec.endswith(".gz") else spec
    return "parquet" if stem.lower().endswith(_PARQUET) else "csv"


def _read_head(path: str, rows: int) -> tuple[bytes, bool]:
    """(the first bytes of ``path`` holding about ``rows`` lines, whether that is the whole file)."""
    chunks, lines = [], 0
    with FileSystems.open(path) as f:  # decompresses .gz by its extension
        while lines <= rows + 10:
            chunk = f.read(_CHUNK)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            lines += chunk.count(b"\n")
    return b"".join(chunks), False


def _read_parquet(files: list[str], rows: int) -> pa.Table:
    tables = []
    for path in files:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            got, batches = 0, []
            for batch in pq.ParquetFile(f).iter_batches(batch_size=min(rows, 65_536)):
                batches.append(batch)
                got += batch.num_rows
                if got >= rows:
                    break
            tables.append(pa.Table.from_batches(batches).slice(0, rows))
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise UserError(f"--input: the Parquet files do not share one schema: {e}") from e


def _read_bigquery(specs: tuple[str, ...], rows: int) -> pa.Table:
    """The first ``rows`` rows through the jobs' BigQuery reader (Beam's connector): needs Google credentials."""
    import apache_beam as beam

    if len(specs) != 1:
        raise OptionsError("--input: one bigquery:// table or query at a time")
    try:
        planned = bigquery.plan_bigquery(specs[0], ["__probe__"])  # validates the spec as the jobs do
    except ValueError as e:
        raise OptionsError(str(e)) from None
    query = planned.query.replace("SELECT `__probe__`", "SELECT *", 1)
    query = f"SELECT * FROM ({query}) LIMIT {rows}"
    print(f"reading {rows} rows of {specs[0]} through BigQuery: needs Google credentials "
          "(gcloud auth application-default login) and a project to bill", file=sys.stderr)
    read = bigquery.BigQueryRead(spec=specs[0], query=query)
    gathered: list[dict] = []
    with beam.Pipeline() as p:
        _ = p | bigquery.read_transform(read) | beam.Map(gathered.append)
    if not gathered:
        raise UserError(f"--input {specs[0]}: the table has no rows")
    return bigquery.rows_to_table(gathered, list(gathered[0]))
