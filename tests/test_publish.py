"""All-or-nothing publishing (issue 10, points 4 and 5): on local disk and on gs:// (a local GCS emulator),
a reader sees the previous version or the new one, never a mix or nothing, even when a publish is killed
half-way; a failed preprocess rerun leaves the previous output byte-identical."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ctrflow.beam_jobs.outputs import publish
from ctrflow.pipeline import artifacts as af
from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv

BUCKET = "ctrflow-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    """A pure-Python GCS emulator on a free loopback port; Beam's gs:// FileSystems talk to it."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--in-memory", "--default-bucket", BUCKET],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the GCS emulator did not start")
            time.sleep(0.2)
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    FileSystems.set_options(PipelineOptions(["--no_auth"]))  # anonymous: no credential lookups and retries
    try:
        yield f"gs://{BUCKET}"
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        proc.terminate()
        proc.wait(timeout=30)


def _reader(root: str) -> dict[str, bytes]:
    """What a reader following the protocol sees: the files _SUCCESS lists in the _LATEST version."""
    version = af.live_dir(root)
    if version == root.rstrip("/"):
        return {}
    return {os.path.relpath(p, version): af.read_bytes(p) for p in af.success_files(version)}


def _write_version(root: str, files: dict[str, bytes]) -> str:
    folder = publish.new_version_dir(root)
    for name, data in files.items():
        af.write_bytes(af.join(folder, name), data)
    return folder


def _check_protocol(root: str, monkeypatch) -> None:
    v1 = {"part-0.parquet": b"one" * 100, "sub/part-1.parquet": b"uno", "manifest.json": b"{}"}
    v2 = {"part-0.parquet": b"two" * 50, "part-1.parquet": b"dos", "manifest.json": b"{\"v\": 2}"}
    assert _reader(root) == {}
    first = _write_version(root, v1)
    assert _reader(root) == {}  # written but not published: invisible
    publish.publish(first)
    assert _reader(root) == v1

    seen = []  # a reader between every step of the next publish
    monkeypatch.setattr(publish, "before_step", lambda step: seen.append((step, _reader(root))))
    second = _write_version(root, v2)
    publish.publish(second)
    assert seen == [("success", v1), ("pointer", v1)] and _reader(root) == v2

    for killed_at in ("success", "pointer"):  # a publish killed half-way: readers keep the live version
        def boom(step, killed_at=killed_at):
            if step == killed_at:
                raise KeyboardInterrupt(f"killed before {step}")
        monkeypatch.setattr(publish, "before_step", boom)
        third = _write_version(root, {"part-0.parquet": b"three"})
        with pytest.raises(KeyboardInterrupt):
            publish.publish(third)
        assert _reader(root) == v2
        publish.discard(third)
    monkeypatch.setattr(publish, "before_step", lambda step: None)

    fourth = _write_version(root, {"part-0.parquet": b"four"})
    publish.publish(fourth)
    assert _reader(root) == {"part-0.parquet": b"four"}
    # the previous live version stays for readers in flight; older published ones are deleted
    assert {os.path.basename(v) for v in publish.versions(root)} == {os.path.basename(second),
                                                                      os.path.basename(fourth)}


def test_publish_is_all_or_nothing_on_local_disk(tmp_path, monkeypatch):
    _check_protocol(str(tmp_path / "out" / "date=2026-11-21"), monkeypatch)


def test_publish_is_all_or_nothing_on_gcs(gcs, monkeypatch):
    _check_protocol(f"{gcs}/scores/date=2026-11-21", monkeypatch)


@pytest.mark.slow
def test_score_job_publishes_on_gcs_and_a_killed_publish_keeps_the_old_partition(clicks_run, gcs, tmp_path,
                                                                                monkeypatch):
    import io

    import pyarrow.parquet as pq

    from ctrflow.beam_jobs.scoring import job as score

    days = []
    for i, seed in enumerate((31, 32)):
        (tmp_path / f"in{i}").mkdir()
        days.append(write_csv(make_clicks(200, seed=seed, first_id=1000 * i), tmp_path / f"in{i}" / "day.csv"))
    out = f"{gcs}/scores"
    args = ["--model", clicks_run["model"], "--date", "2026-11-21", "--output", out, "--no_auth"]
    [first] = score.run(args + ["--input", days[0]])
    partition = f"{out}/date=2026-11-21"
    assert first["output"].startswith(partition + "/v=") and af.live_dir(partition) == first["output"]

    def read_ids() -> list[int]:
        version = af.live_dir(partition)
        got = []
        for p in af.success_files(version):
            if p.endswith(".parquet"):
                got += pq.read_table(io.BytesIO(af.read_bytes(p))).column("request_id").to_pylist()
        return sorted(got)

    assert read_ids() == list(range(200))

    def killed(step):
        if step == "pointer":
            raise KeyboardInterrupt("killed between _SUCCESS and _LATEST")
    monkeypatch.setattr(publish, "before_step", killed)
    with pytest.raises(KeyboardInterrupt):
        score.run(args + ["--input", days[1]])
    assert read_ids() == list(range(200))  # the reader still sees the first run, whole
    monkeypatch.setattr(publish, "before_step", lambda step: None)
    [second] = score.run(args + ["--input", days[1]])
    assert read_ids() == list(range(1000, 1200)) and second["scored_rows"] == 200


@pytest.mark.slow
def test_failed_preprocess_rerun_leaves_the_previous_output_byte_identical(tmp_path, monkeypatch):
    from ctrflow.beam_jobs.outputs.manifest import RejectedFractionError
    from ctrflow.beam_jobs.preprocess import job as preprocess

    (tmp_path / "s.yaml").write_text(CLICKS_SCHEMA)
    good = write_csv(make_clicks(600, seed=41), tmp_path / "good.csv")
    with open(good, "ab") as f:  # bad bytes are rejected rows in preprocess too, not a failed job
        f.write(b"9001,30,1,caf\xe9,ios,t1,camp-1,1\n9002,30,1,city01,i\x00os,t1,camp-1,0\n")
    df = make_clicks(600, seed=42)
    df["age"] = df["age"].astype(object)
    df.loc[:59, "age"] = "old"  # 10% rejected
    bad = write_csv(df, tmp_path / "bad.csv")
    out = tmp_path / "data"
    run = ["--schema", str(tmp_path / "s.yaml"), "--output", str(out), "--max-rejected-fraction", "0.01"]
    first = preprocess.run(run + ["--train", good])
    assert (first["splits"]["train"]["input_rows"], first["splits"]["train"]["rejected_rows"]) == (602, 2)
    rejected = sorted(json.loads(line)["reason"] for f in (out / first["version"] / "rejected").iterdir()
                      for line in f.open())
    assert rejected == ["NUL byte at position 18", "not valid utf-8: byte 0xe9 at position 13"]

    def snapshot():
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    before = snapshot()
    assert af.live_dir(str(out)) == first["output"] and af.PreprocessArtifacts.live(str(out)).manifest() == first

    def killed(step):
        if step == "pointer":
            raise KeyboardInterrupt("killed before _LATEST")
    monkeypatch.setattr(publish, "before_step", killed)  # a rerun killed half-way through its publish
    with pytest.raises(KeyboardInterrupt):
        preprocess.run(run + ["--train", good])
    assert snapshot() == before
    monkeypatch.setattr(publish, "before_step", lambda step: None)

    with pytest.raises(RejectedFractionError):  # a rerun failing its checks
        preprocess.run(run + ["--train", bad])
    after = snapshot()
    assert {k: v for k, v in after.items() if k in before} == before  # every previous file byte-identical
    extra = {k.split("/")[0] for k in after if k not in before}
    assert len(extra) == 1 and extra.pop().startswith("v=")  # the failed run's folder, unpublished
    assert af.live_dir(str(out)) == first["output"]
