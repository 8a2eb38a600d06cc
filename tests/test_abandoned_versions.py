"""Version folders of killed runs are removed by a later run once clearly abandoned (issue 29, item 7).

A run holds a lease on its version folder (``_LEASE``, renewed while it runs); a later run of the same output
removes the folders without ``_SUCCESS`` whose lease ran out, or that have no lease and were not written for a
day. A published folder and one whose lease is live are never touched.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ctrflow.beam_jobs.outputs import publish
from ctrflow.pipeline import artifacts as af
from tests.test_publish import gcs  # noqa: F401 - the GCS emulator fixture

DAY = 24 * 3600


def _folder(root: str, name: str, files: dict[str, bytes]) -> str:
    path = af.join(root, name)
    for rel, data in files.items():
        af.write_bytes(af.join(path, rel), data)
    return path


def _lease(expires: float) -> bytes:
    return json.dumps({"run": "someone", "host": "h", "pid": 1, "expires": expires}).encode()


def _names(root: str) -> set[str]:
    return {os.path.basename(v) for v in publish.versions(root)}


def _check_cleanup(root: str, caplog) -> None:
    now = time.time()
    published = publish.new_version_dir(root)
    af.write_bytes(af.join(published, "part-0"), b"scores")
    publish.publish(published)
    _folder(root, "v=20261101T000000-expired1", {af.LEASE: _lease(now - 60), "part-0": b"half"})
    _folder(root, "v=20261101T000000-running1", {af.LEASE: _lease(now + 600), "part-0": b"half"})
    with caplog.at_level(logging.INFO, logger=publish.__name__):
        mine = publish.new_version_dir(root)  # the next run: cleans up before it starts
    assert _names(root) == {os.path.basename(published), "v=20261101T000000-running1", os.path.basename(mine)}
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed the abandoned")]
    assert removed == [f"removed the abandoned version folder {af.join(root, 'v=20261101T000000-expired1')} "
                       f"(no _SUCCESS; its lease ran out at {publish._iso(now - 60)})"]
    assert json.loads(af.read_text(af.join(mine, af.LEASE)))["expires"] > now + publish.LEASE_SECONDS - 60
    publish.discard(mine)


def test_abandoned_folders_are_removed_on_local_disk(tmp_path, caplog):
    _check_cleanup(str(tmp_path / "scores" / "date=2026-11-21"), caplog)


def test_abandoned_folders_are_removed_on_gcs(gcs, caplog):  # noqa: F811
    _check_cleanup(f"{gcs}/abandoned/date=2026-11-21", caplog)


def test_unleased_folders_are_removed_after_a_day_only(tmp_path):
    root = str(tmp_path / "data")
    old = _folder(root, "v=20261101T000000-oldrun01", {"train/part-0.tfrecord.gz": b"x", "manifest.json": b"{}"})
    recent = _folder(root, "v=20261101T000000-recent01", {"manifest.json": b"{}"})  # an old name, new files
    published_long_ago = _folder(root, "v=20261101T000000-publish1", {"part-0": b"x", af.SUCCESS: b"{}"})
    day_and_a_bit = time.time() - DAY - 600
    for folder in (old, published_long_ago):
        for dirpath, _, files in os.walk(folder):
            for f in files:
                os.utime(os.path.join(dirpath, f), (day_and_a_bit, day_and_a_bit))
    assert publish.remove_abandoned(root) == [old]
    assert _names(root) == {os.path.basename(recent), os.path.basename(published_long_ago)}
    assert publish.remove_abandoned(root, max_age=0) == [recent]  # a stated age: from the last file written


def test_a_run_killed_with_sigkill_is_removed_once_its_lease_runs_out(tmp_path):
    root = str(tmp_path / "data")
    run = textwrap.dedent(f"""
        from ctrflow.beam_jobs.outputs import publish
        from ctrflow.pipeline import artifacts as af
        publish.LEASE_SECONDS, publish.RENEW_SECONDS = 3, 0.5
        folder = publish.new_version_dir({root!r})
        af.write_bytes(af.join(folder, "part-0"), b"half written")
        print(folder, flush=True)
        import time
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", run], stdout=subprocess.PIPE, text=True)
    try:
        folder = proc.stdout.readline().strip()
        assert folder.startswith(root + "/v=")
        first = json.loads(af.read_text(af.join(folder, af.LEASE)))["expires"]
        time.sleep(4)  # longer than the lease: only renewals keep it alive
        assert publish.remove_abandoned(root) == []
        assert json.loads(af.read_text(af.join(folder, af.LEASE)))["expires"] > first
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert publish.remove_abandoned(root) == []  # killed, but its lease has not run out yet
    time.sleep(3.5)
    assert publish.remove_abandoned(root) == [folder]
    assert not os.path.exists(folder)


def test_a_run_whose_folder_was_removed_does_not_publish(tmp_path):
    root = str(tmp_path / "data")
    first = publish.new_version_dir(root)
    af.write_bytes(af.join(first, "part-0"), b"one")
    publish.publish(first)
    second = publish.new_version_dir(root)
    af.write_bytes(af.join(second, "part-0"), b"two")
    publish.delete_folder(second)  # another run took it for abandoned while this one was stopped
    af.write_bytes(af.join(second, "part-1"), b"written after")
    with pytest.raises(publish.LeaseLost, match="removed as abandoned"):
        publish.publish(second)
    assert af.live_dir(root) == first


def test_publish_ends_the_lease_and_does_not_list_it(tmp_path):
    root = str(tmp_path / "data")
    folder = publish.new_version_dir(root)
    af.write_bytes(af.join(folder, "part-0"), b"x")
    doc = publish.publish(folder)
    assert [f["path"] for f in doc["files"]] == ["part-0"]
    assert sorted(os.listdir(folder)) == [af.SUCCESS, "part-0"]
