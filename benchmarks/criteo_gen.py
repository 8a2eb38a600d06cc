"""Generate Criteo-format click logs of any size with a planted, learnable signal.

Writes exactly the raw Criteo Display Advertising (``dac``/``train.txt``)
format: TAB-separated, no header, ``label, I1..I13, C1..C26``; integers may
be negative (I2) and are often empty; categoricals are 8-hex-digit hashes,
Zipf-distributed, often empty. Missing rates, medians and (capped)
cardinalities follow the real data (``../shared/data/criteo`` samples and the
published per-column cardinalities).

The label is Bernoulli(sigmoid(bias + per-token effects + count effects)), so
a model that learns the token effects gets a real AUC (about 0.75-0.8 for a
good model; a constant model gets 0.5). Deterministic given ``--seed``.

    python benchmarks/criteo_gen.py --rows 1000000 --output /tmp/criteo_1m.txt
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

# per-column figures measured on ../shared/data/criteo/wide-resdnn/train.csv
I_MISSING = [0.45, 0.0, 0.2, 0.2, 0.05, 0.25, 0.05, 0.0, 0.05, 0.45, 0.05, 0.77, 0.2]
I_MEDIAN = [1, 3, 7, 4, 2779, 41, 3, 7, 42, 0.5, 1, 0.5, 5]
C_MISSING = [0.0, 0.0, 0.03, 0.03, 0.0, 0.13, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0,
             0.0, 0.0, 0.03, 0.0, 0.0, 0.45, 0.45, 0.03, 0.82, 0.0, 0.03, 0.45, 0.45]
# cardinalities of the full 45M-row Kaggle set
C_CARDINALITY = [1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
                 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572]
COLUMNS = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


class CriteoGenerator:
    """Draws rows chunk by chunk; all randomness derives from one seed."""

    def __init__(self, seed: int = 0, max_cardinality: int = 200_000, zipf: float = 1.1,
                 signal: float = 1.0, positive_rate: float = 0.25):
        self.rng = np.random.default_rng(seed)
        setup = np.random.default_rng(seed + 1_000_003)
        self.cards = [min(c, max_cardinality) for c in C_CARDINALITY]
        self.vocab, self.cdf, self.effect = [], [], []
        for j, k in enumerate(self.cards):
            hashes = setup.choice(2**32, size=k, replace=False) if k < 2**20 else setup.integers(0, 2**32, k)
            self.vocab.append(np.array([f"{h:08x}" for h in hashes]))
            p = 1.0 / np.arange(1, k + 1) ** zipf
            self.cdf.append(np.cumsum(p / p.sum()))
            # about half of the columns carry signal; head tokens matter most
            strength = signal * (0.6 if j % 2 == 0 else 0.15)
            self.effect.append(setup.normal(0.0, strength, k).astype(np.float32))
        self.i_weight = setup.normal(0.0, 0.25 * signal, 13).astype(np.float32)
        self.bias = float(np.log(positive_rate / (1 - positive_rate))) - 1.6 * signal  # effects skew positive

    def chunk(self, n: int) -> pa.Table:
        rng = self.rng
        logit = np.full(n, self.bias, np.float32)
        arrays: dict[str, pa.Array] = {}
        for j in range(13):
            median = I_MEDIAN[j]
            values = np.floor(rng.lognormal(np.log(median + 1.0), 1.2, n)).astype(np.int64) - (1 if j == 1 else 0)
            if j == 1:  # I2 takes small negative values
                values = np.where(rng.random(n) < 0.05, -rng.integers(1, 3, n), values)
            missing = rng.random(n) < I_MISSING[j]
            z = (np.log1p(np.maximum(values, 0)) - np.log1p(median)).astype(np.float32)
            logit += np.where(missing, 0.0, self.i_weight[j] * z)
            arrays[f"I{j + 1}"] = pa.array(values, mask=missing)
        for j in range(26):
            idx = np.searchsorted(self.cdf[j], rng.random(n)).clip(0, self.cards[j] - 1)
            missing = rng.random(n) < C_MISSING[j]
            logit += np.where(missing, 0.0, self.effect[j][idx])
            arrays[f"C{j + 1}"] = pa.array(self.vocab[j][idx], mask=missing)
        label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
        return pa.table({"label": pa.array(label), **arrays})


def write(path: str, rows: int, seed: int = 0, chunk_rows: int = 250_000, **kwargs) -> str:
    """Writes ``rows`` rows to ``path`` (raw Criteo format); returns the path."""
    gen = CriteoGenerator(seed=seed, **kwargs)
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".partial"
    with pa.OSFile(tmp, "wb") as sink:
        writer = None
        done = 0
        while done < rows:
            table = gen.chunk(min(chunk_rows, rows - done))
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema, write_options=options)
            writer.write_table(table)
            done += table.num_rows
        if writer is not None:
            writer.close()
    os.replace(tmp, path)
    return path


def ensure(path: str, rows: int, seed: int = 0) -> str:
    """Generates the file unless a complete one exists (benchmarks reuse it)."""
    if not os.path.exists(path):
        write(path, rows, seed)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-cardinality", type=int, default=200_000,
                   help="cap of each categorical column's vocabulary (default: %(default)s)")
    args = p.parse_args(argv)
    t = time.time()
    write(args.output, args.rows, args.seed, max_cardinality=args.max_cardinality)
    size = os.path.getsize(args.output)
    print(f"wrote {args.rows} rows ({size / 1e6:.1f} MB) to {args.output} in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
