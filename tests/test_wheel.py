"""Dataflow staging from a wheel install: the job stages a wheel of the installed ctrflow, never ``None``.

Builds the real wheel (``pip wheel .``), installs it with ``--no-deps`` into a fresh
venv that sees the test interpreter's packages (a ``.pth`` file), and from an empty folder builds the
preprocess pipeline for the DataflowRunner (never run) and lets Beam's Stager
collect what it would upload. The staged wheel is then checked file by file:
one import name, the run-time data inside, and a RECORD whose sha256 digests match.
"""
import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = textwrap.dedent('''
    import json, logging, os, sys
    logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import SetupOptions
    from apache_beam.runners.portability.stager import Stager

    import ctrflow.schemas
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.beam_jobs.options import PreprocessOptions
    from ctrflow.beam_jobs.runners import pipeline_options, project_setup_file
    from ctrflow.beam_jobs.input.plan import plan_reads
    from ctrflow.cli.demo import bundled_census_dir
    from ctrflow.schemas import bundled_schema_path, load_schema

    staged, tft_temp = sys.argv[1], sys.argv[2]
    schema = load_schema(bundled_schema_path("census"))
    train = os.path.join(bundled_census_dir(), "adult.data")
    tasks = {"train": plan_reads(schema, [train], ["age"])[0], "eval": []}
    options = pipeline_options(["--runner", "DataflowRunner", "--project", "p", "--region", "r",
                                "--temp_location", "gs://b/tmp", "--dataflow_endpoint", "http://localhost:1"])
    p = beam.Pipeline(options=options)
    with preprocess.transform_context(tft_temp):
        preprocess.build_pipeline(p, schema, tasks, "gs://b/out",
                                  PreprocessOptions(schema="s", train=(train,), output="gs://b/out"))
    from apache_beam.portability.api import beam_runner_api_pb2 as api
    resources = Stager.create_job_resources(options, staged)
    uploads = {api.ArtifactStagingToRolePayload.FromString(r.role_payload).staged_name:
               api.ArtifactFilePayload.FromString(r.type_payload).path for r in resources}
    with open(uploads["extra_packages.txt"]) as f:
        extra_txt = f.read().split()
    print("RESULT " + json.dumps({"uploads": uploads, "extra_packages_txt": extra_txt,
        "ctrflow": ctrflow.schemas.__file__, "runner": type(p.runner).__name__, "setup_file": project_setup_file(),
        "options_setup_file": options.view_as(SetupOptions).setup_file,
        "extra_packages": options.view_as(SetupOptions).extra_packages}))
''')


def _record_digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", str(tmp / "dist")],
                   check=True, cwd=str(tmp))
    [wheel] = os.listdir(tmp / "dist")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    python = str(tmp / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(tmp / "dist" / wheel)], check=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies come from this interpreter's environment (CI's venv), listed after the new venv's own
    # folder; `--system-site-packages` would show the base Python's instead, which on a clean machine has none.
    # Plain path lines: that folder's own .pth files (the checkout's editable install) are not processed.
    paths = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    with open(os.path.join(site, "_test_dependencies.pth"), "w") as f:
        f.write("\n".join(paths) + "\n")
    return {"tmp": tmp, "python": python, "site": site, "wheel": wheel}


@pytest.mark.slow
def test_the_wheel_installs_one_import_name(wheel_venv):
    top = {n for n in os.listdir(wheel_venv["site"]) if "ctrflow" in n.lower() or n in
           ("model", "pipeline", "schemas", "beam_jobs", "data")}
    assert top == {"ctrflow", "ctrflow-0.2.0.dist-info"}


@pytest.mark.slow
def test_a_wheel_install_stages_a_wheel_of_itself_for_dataflow(wheel_venv):
    tmp = wheel_venv["tmp"]
    (tmp / "empty").mkdir()
    (tmp / "staged").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([wheel_venv["python"], "-c", SCRIPT, str(tmp / "staged"), str(tmp / "tft")],
                          cwd=str(tmp / "empty"), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(line[len("RESULT "):])
    assert result["ctrflow"].startswith(wheel_venv["site"])  # the installed copy, not the checkout
    assert result["runner"] == "DataflowRunner"
    assert result["setup_file"] is None and result["options_setup_file"] is None
    [extra] = result["extra_packages"]
    assert os.path.basename(extra) == wheel_venv["wheel"] == "ctrflow-0.2.0-py3-none-any.whl"
    # what Beam would upload to the staging location: the wheel, and the list the workers pip-install
    assert result["uploads"][wheel_venv["wheel"]] == extra
    assert result["extra_packages_txt"] == [wheel_venv["wheel"]]
    assert not [name for name in result["uploads"] if name.endswith(".tar.gz")]  # no sdist: no setup.py here
    logs = [x for x in proc.stderr.splitlines() if x.startswith("LOG ") and "stag" in x]
    assert any(f"--extra_package {extra}" in x for x in logs), logs
    assert not any("None" in x for x in logs), logs

    with zipfile.ZipFile(extra) as whl:
        names = whl.namelist()
        assert {n.split("/")[0] for n in names} == {"ctrflow", "ctrflow-0.2.0.dist-info"}
        for must in ("ctrflow/cli/commands.py", "ctrflow/beam_jobs/input/plan.py", "ctrflow/pipeline/transform.py",
                     "ctrflow/model/export.py", "ctrflow/schemas/census.yaml", "ctrflow/data/census/adult.data",
                     "ctrflow/data/census/NOTICE", "ctrflow-0.2.0.dist-info/METADATA",
                     "ctrflow-0.2.0.dist-info/entry_points.txt"):
            assert must in names, must
        assert not [n for n in names if n.endswith(".pyc") or n.endswith(("/INSTALLER", "/direct_url.json"))]
        rows = list(csv.reader(io.StringIO(whl.read("ctrflow-0.2.0.dist-info/RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = whl.read(path)
            assert (digest, int(size)) == (_record_digest(data), len(data)), path
        # byte for byte the files of the wheel pip built
        with zipfile.ZipFile(tmp / "dist" / wheel_venv["wheel"]) as built:
            for name in built.namelist():
                if name.startswith("ctrflow/"):
                    assert whl.read(name) == built.read(name), name
