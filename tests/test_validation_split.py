"""model.validation: a preprocess output's `valid` split replaces the trainer's hash holdout."""
from __future__ import annotations

import pytest

from ctrflow.model import validation
from ctrflow.pipeline import artifacts as af
from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv


def _split(root, name: str) -> None:
    d = root / name
    d.mkdir()
    (d / af.SPLIT_FILES.replace("*", "00000-of-00001")).write_bytes(b"")


def test_without_a_valid_split_the_hash_holdout_validates(tmp_path) -> None:
    _split(tmp_path, "train")
    _split(tmp_path, "eval")
    assert not validation.has_valid_split(str(tmp_path))
    assert validation.train_holdout(str(tmp_path), 0.1) == (0.1, False)
    assert validation.valid_rows(str(tmp_path), 0.1) == ("train", (0.1, True))


def test_a_valid_split_validates_and_train_keeps_every_row(tmp_path) -> None:
    for name in ("train", "valid", "eval"):
        _split(tmp_path, name)
    assert validation.has_valid_split(str(tmp_path))
    assert validation.train_holdout(str(tmp_path), 0.1) is None
    assert validation.valid_rows(str(tmp_path), 0.1) == ("valid", None)


@pytest.mark.slow
def test_preprocess_valid_split_is_what_the_trainer_validates_on(tmp_path) -> None:
    """`preprocess --valid` writes and counts a `valid` split; `ctrflow train` selects on exactly its rows."""
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.model import train
    from ctrflow.pipeline.artifacts import live_dir

    (tmp_path / "s.yaml").write_text(CLICKS_SCHEMA)
    files = {name: write_csv(make_clicks(rows, seed=seed, first_id=first), tmp_path / f"{name}.csv")
             for name, rows, seed, first in (("train", 1500, 1, 0), ("valid", 400, 2, 5000),
                                             ("eval", 300, 3, 9000))}
    m = preprocess.run(["--schema", str(tmp_path / "s.yaml"), "--train", files["train"], "--valid", files["valid"],
                        "--eval", files["eval"], "--output", str(tmp_path / "data")])
    for name, rows in (("train", 1500), ("valid", 400), ("eval", 300)):
        s = m["splits"][name]
        assert (s["input_rows"], s["output_rows"], s["rejected_rows"]) == (rows, rows, 0), name
    data = live_dir(str(tmp_path / "data"))
    assert validation.has_valid_split(data)
    metrics = train.run(["--data", data, "--output", str(tmp_path / "model"), "--epochs", "1", "--ensemble", "1",
                         "--batch-size", "256", "--verbose", "0"])
    assert metrics["selected_on"] == "valid"
    assert metrics["valid"]["eval_rows"] == 400  # all of the valid split, not 10% of train
    assert metrics["eval_rows"] == 300
