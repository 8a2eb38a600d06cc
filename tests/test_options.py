"""Typed job options: one dataclass per job, flags derived from it, validated once, recorded whole."""
import dataclasses
import json
import os

import pytest

from ctrflow.beam_jobs.options import PreprocessOptions, ScoreOptions, parse_job_options
from ctrflow.beam_jobs.preprocess import job as preprocess
from ctrflow.beam_jobs.scoring import job as score
from ctrflow.common.errors import OptionsError, UserError
from ctrflow.common.flags import flag_name
from ctrflow.model.options import EvaluateOptions, TrainerOptions


@pytest.mark.parametrize("cls,parser", [
    (PreprocessOptions, preprocess.build_arg_parser()), (ScoreOptions, score.build_arg_parser()),
])
def test_every_field_is_a_flag_with_the_dataclass_default(cls, parser):
    defaults = {a.dest: a.default for a in parser._actions}
    for f in dataclasses.fields(cls):
        if f.name == "beam_args":
            assert flag_name(f) not in parser.flags()
            continue
        assert flag_name(f) in parser.flags(), f.name
        if f.default is not dataclasses.MISSING and not isinstance(f.default, tuple):
            assert defaults[f.name] == f.default, f.name


def test_flags_become_a_typed_frozen_object():
    o = parse_job_options(ScoreOptions, score.build_arg_parser(),
                          ["--model", "m", "--input", "a/{date}.csv", "--input", "b.csv",
                           "--date", "2026-02-27:2026-03-01", "--output", "o", "--passthrough", "x, y",
                           "--batch-rows", "100", "--fail-on-drift", "--runner", "DirectRunner"])
    assert o == ScoreOptions(model="m", input=("a/{date}.csv", "b.csv"), date="2026-02-27:2026-03-01", output="o",
                             passthrough=("x", "y"), batch_rows=100, fail_on_drift=True,
                             beam_args=("--runner", "DirectRunner"))
    assert o.dates == ["2026-02-27", "2026-02-28", "2026-03-01"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.batch_rows = 5


@pytest.mark.parametrize("make,message", [
    (lambda: PreprocessOptions(schema="s", train=("t",), output="o", batch_rows=0), "--batch-rows must be > 0"),
    (lambda: PreprocessOptions(schema="s", train=("t",), output="o", split_key="k"), "only applies with"),
    (lambda: PreprocessOptions(schema="s", train=("t",), output="o", max_rejected_fraction=2), "in \\[0, 1\\]"),
    (lambda: ScoreOptions(model="m", input=("i",), date="2026-03-02:2026-03-01", output="o"), "FIRST <= LAST"),
    (lambda: ScoreOptions(model="m", input=("i",), date="2026-03-01", output="o", output_table="p:d.t$20260101"),
     "partition decorator"),
    (lambda: TrainerOptions(data="d", output="o", epochs=0), "--epochs must be > 0"),
    (lambda: EvaluateOptions(model="m", data="d", bins=0), "--bins"),
])
def test_invalid_combinations_are_one_options_error(make, message):
    with pytest.raises(OptionsError, match=message) as e:
        make()
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError) and e.value.exit_code == 2


def test_manifests_and_config_json_record_every_option(clicks_run):
    m = clicks_run["manifest"]
    assert m["options"] == PreprocessOptions(schema=clicks_run["schema"], train=(clicks_run["train_csv"],),
                                             eval=(clicks_run["eval_csv"],), output=clicks_run["data_root"]).to_dict()
    with open(os.path.join(clicks_run["model"], "config.json")) as f:
        config = json.load(f)
    trainer = TrainerOptions(data=clicks_run["data_root"], output=clicks_run["model"], epochs=1, batch_size=256,
                             verbose=0, ensemble=1)
    assert config["trainer"] == trainer.to_dict()
    assert set(config["trainer"]) == {f.name for f in dataclasses.fields(TrainerOptions)}
