"""What an input glob can match, decided on paths alone: no filesystem is listed.

The score job writes beside its inputs; ``check_output_location`` refuses an
output that an input pattern could read back on a later day, one that holds
the inputs, or one that overlaps the model. The test is what each pattern can
match (``*``, ``?``, ``[...]``, ``{date}`` stay within one path component,
``**`` crosses folders), not the input's folder: scores beside a single input
file, or in a sibling folder of ``day/*.csv``, are fine.
"""
from __future__ import annotations

import os
import re

from ctrflow.beam_jobs.input.bigquery import is_bigquery
from ctrflow.common.errors import OptionsError

__all__ = ["check_output_location", "pattern_can_match_inside"]


def _base_dir(pattern: str) -> str:
    """The folder part of a pattern before any wildcard or placeholder."""
    cut = min([i for i in (pattern.find(ch) for ch in "*?[{") if i >= 0], default=len(pattern))
    head = pattern[:cut]
    return head if head.endswith("/") else os.path.dirname(head)


def _norm(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def _is_inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (an empty folder holds nothing)."""
    if not folder:
        return False
    p, f = _norm(path) + "/", _norm(folder) + "/"
    return p.startswith(f)


def _component_regex(part: str) -> str:
    """One path component of a glob (``*``, ``?``, ``[...]``, ``{date}``) as a regex that stays inside it."""
    out, i = [], 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and "]" in part[i + 1:]:
            j = part.index("]", i + 1)
            out.append("[" + part[i + 1:j].replace("!", "^", 1) + "]")
            i = j
        elif ch == "{" and "}" in part[i:]:  # {date} and other placeholders: any text within the component
            out.append("[^/]*")
            i = part.index("}", i)
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def pattern_can_match_inside(pattern: str, folder: str) -> bool:
    """Whether some file under ``folder`` could match the input ``pattern`` (``**`` crosses folders)."""
    pat = _norm(pattern).split("/")
    parts = _norm(folder).split("/")
    for i, component in enumerate(parts):
        if i >= len(pat):
            return False
        if "**" in pat[i]:
            return True
        if not re.fullmatch(_component_regex(pat[i]), component):
            return False
    return True  # the pattern continues below the folder, or matches the folder itself


def check_output_location(output: str, inputs: list[str], model_dir: str) -> None:
    """Refuses outputs that the input patterns could read back, that hold the inputs, or that overlap the model."""
    for pattern in (p for p in inputs if not is_bigquery(p)):
        base = _base_dir(pattern)
        if base not in ("", ".") and _is_inside(base, output):
            raise OptionsError(f"--output {output} contains the input location {base}: refusing")
        if pattern_can_match_inside(pattern, output):
            raise OptionsError(f"--output {output} is inside the input location: --input {pattern} could match "
                               "files written there; refusing (scores would be mixed into the input)")
    if _is_inside(output, model_dir) or _is_inside(model_dir, output):
        raise OptionsError(f"--output {output} overlaps the model directory {model_dir}: refusing")
