"""The docs say what is true: README's schemas load, the paths it names exist, BENCHMARKS.md keeps its shape."""
from __future__ import annotations

import os
import re

import pytest

from ctrflow.schemas import bundled_schema_path, load_schema, loads_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")
LAYERS = ("common", "schemas", "pipeline", "model", "beam_jobs", "cli", "data")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def yaml_blocks(markdown: str) -> list[str]:
    """The bodies of every ```yaml fenced block, in order."""
    return re.findall(r"^```yaml\n(.*?)^```", markdown, re.S | re.M)


def schema_blocks(markdown: str) -> list[str]:
    """The yaml blocks that claim to be a schema: those with a top-level ``columns:`` key."""
    return [b for b in yaml_blocks(markdown) if re.search(r"^columns:", b, re.M)]


def test_the_block_finder_tells_schemas_from_other_yaml():
    text = "```yaml\nname: x\ncolumns:\n  - {name: a}\n```\n\n```yaml\nmodel: deepfm\n```\n"
    assert yaml_blocks(text) == ["name: x\ncolumns:\n  - {name: a}\n", "model: deepfm\n"]
    assert schema_blocks(text) == ["name: x\ncolumns:\n  - {name: a}\n"]


def test_every_readme_schema_loads():
    blocks = schema_blocks(_read(README))
    assert len(blocks) >= 2, "README lost its schema examples"
    names = [loads_schema(b, "README.md").name for b in blocks]
    assert "census" in names


def test_readme_census_schema_is_the_shipped_file():
    path = bundled_schema_path("census")
    [block] = [b for b in schema_blocks(_read(README)) if re.search(r"^name: census$", b, re.M)]
    assert block.rstrip("\n") == _read(path).rstrip("\n"), "README's census schema differs from schemas/census.yaml"
    assert loads_schema(block, path) == load_schema(path)


def test_readme_census_schema_fits_adult_data():
    """Its columns are adult.data's fields, one for one (a header-less CSV is read by position)."""
    schema = load_schema(bundled_schema_path("census"))
    with open(os.path.join(ROOT, "data", "census", "adult.data"), encoding="utf-8") as f:
        first = f.readline()
    assert len(first.split(schema.format.delimiter)) == len(schema.columns)


def test_paths_the_readme_names_exist():
    text = _read(README)
    paths = set(re.findall(r"`((?:%s|benchmarks|tests)/[\w./]*\w)`" % "|".join(LAYERS), text))
    paths |= set(re.findall(r"\(`((?:%s)/[\w/]*\.py)`" % "|".join(LAYERS), text))
    assert paths, "no paths found: the pattern is wrong"
    missing = sorted(p for p in paths if "*" not in p and not os.path.exists(os.path.join(ROOT, p)))
    assert not missing, f"README names paths that do not exist: {missing}"


def test_modules_the_readme_imports_exist():
    modules = set(re.findall(r"\bfrom (ctrflow(?:\.\w+)+) import", _read(README)))
    assert modules
    for name in modules:
        rel = os.path.join(*name.split(".")[1:])
        assert os.path.exists(os.path.join(ROOT, rel + ".py")) or os.path.isdir(os.path.join(ROOT, rel)), name


def benchmark_sections(markdown: str) -> dict[str, str]:
    """``{name: body}`` of every ``<!-- BEGIN name -->`` ... ``<!-- END name -->`` section."""
    begins = re.findall(r"<!-- BEGIN (\S+) -->", markdown)
    sections = dict(re.findall(r"<!-- BEGIN (\S+) -->\n(.*?)\n<!-- END \1 -->", markdown, re.S))
    assert sorted(begins) == sorted(sections), "a BEGIN marker without its END"
    return sections


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    return benchmark_sections(_read(BENCHMARKS))


def test_every_benchmark_section_says_what_how_when(sections):
    assert len(sections) >= 5
    for name, body in sections.items():
        assert body.startswith("## "), name
        for field in ("**Measures**: ", "**Command**: `python benchmarks/", "**Run**: "):
            assert field in body, f"section {name} lacks {field!r}"
        script = re.search(r"\*\*Command\*\*: `python (benchmarks/\w+\.py)", body).group(1)
        assert os.path.exists(os.path.join(ROOT, script)), f"section {name}: {script} does not exist"


def test_benchmark_sections_hold_no_history(sections):
    """One run per section: no paragraph long enough to be a log of runs (history is in git)."""
    for name, body in sections.items():
        longest = max(body.split("\n"), key=len)
        assert len(longest) < 1500, f"section {name} has a {len(longest)}-character line: {longest[:80]}..."
        assert not re.search(r"\b(tenth|ninth|eighth|seventh|sixth|fifth|fourth) run\b", body, re.I), name


def test_each_script_writes_the_section_it_names(sections):
    """The markers the scripts rewrite are the ones in the file (a renamed section would be appended twice)."""
    written = set()
    for script in os.listdir(os.path.join(ROOT, "benchmarks")):
        if script.endswith(".py"):
            text = _read(os.path.join(ROOT, "benchmarks", script))
            written |= set(re.findall(r'update_section\(\s*"([\w-]+)"', text))
            written |= set(re.findall(r'^SECTION = "([\w-]+)"', text, re.M))
            if 'update_section(f"train-{name}"' in text:  # train.py: one section per part of SECTIONS
                written |= {f"train-{n}" for n in re.findall(r'^    "(\w+)": \(', text, re.M)}
    assert set(sections) <= written, f"sections no script writes: {sorted(set(sections) - written)}"
