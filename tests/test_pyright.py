"""The second type checker: basedpyright (what VS Code's Pylance users see) agrees with mypy.

mypy ``--strict`` is the contract (``test_mypy.py``, ``typesafety/``); this
test keeps pyright users covered too (docs/decisions.md, "Type checkers"):

* ``examples/`` type-check without errors;
* every case of ``tests/typesafety/*.yml`` is checked by pyright as well:
  each line mypy rejects, pyright rejects; no other line is an error; and
  each ``reveal_type`` pyright prints is the type mypy prints (module
  prefixes dropped), except the differences listed in :data:`KNOWN`, each
  with its reason — and that list is kept exact, so a difference that
  goes away must be removed from it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

#: (case, line of ``main``) -> why pyright's revealed type differs from mypy's.
KNOWN: dict[tuple[str, int], str] = {
    # pyright narrows a declared variable to the type assigned to it:
    # `risky: Agent[int, str, ValueError] = pure(str)` is then an
    # Agent[int, str, Never] (Err is covariant), so ValueError is gone.
    ("test_control/switch_and_when_share_output_and_join_errors", 7): "narrowing on assignment",
    ("test_control/switch_and_when_share_output_and_join_errors", 8): "narrowing on assignment",
    ("test_control/switch_and_when_share_output_and_join_errors", 9): "narrowing on assignment",
    ("test_control/branches_of_different_output_types_are_rejected", 10): "narrowing on assignment; pyright joins outputs, mypy takes object",
    ("test_control/repeat_needs_output_equal_to_input", 7): "narrowing on assignment",
    ("test_aio/shared_limiters_and_windows_keep_the_type", 7): "narrowing on assignment",
    # pyright infers an unannotated lambda's return from its context only.
    ("test_core/parallel_feeds_a_tuple_consumer", 14): "lambda inference",
    # Formatting: pyright prints defaults and keeps literal types of inputs.
    ("test_executors/on_keeps_the_agent_type", 8): "callable formatting",
    ("test_fanout/fanout_combinators_infer_their_types", 18): "pyright keeps Literal['x'] for a literal key",
    # `object | KeyError` is `object`: pyright prints the union unsimplified.
    ("test_workflow/workflow_handles_carry_output_types", 19): "unsimplified union with object",
    ("test_workflow/workflow_handles_carry_output_types", 20): "unsimplified union with object",
}

#: (case, line) -> why pyright accepts a line mypy rejects, or the reverse.
KNOWN_VERDICTS: dict[tuple[str, int], str] = {
    # `wf, _ = wf.add(...)`: mypy solves `add`'s error type from the type
    # `wf` already has, so a node failing with an undeclared error is
    # refused; pyright re-infers `wf` and widens its error union instead
    # (still sound: the workflow's type then says KeyError too).
    ("test_workflow/workflow_declared_errors_are_enforced", 14): "pyright re-infers a re-assigned variable",
    # `AgentChain[int, int, ValueError]()`: an empty chain is
    # AgentChain[T, T, Never]; mypy accepts the explicit specialisation,
    # pyright matches it to neither constructor overload.
    ("test_orchestration/sequential_flag_known_only_at_run_time", 9): "explicitly specialised empty chain",
}

_REVEAL = re.compile(r'# N: Revealed type is "(.*)"\s*$')
_MODULES = re.compile(r"\b(?:[a-z_]\w*\.)+(?=[A-Za-z_])")


def _pyright(*paths: Path, cwd: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "basedpyright", "--outputjson", "--pythonpath", sys.executable, *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"basedpyright gave no report: {proc.stdout}{proc.stderr}")
    diagnostics: list[dict[str, Any]] = report["generalDiagnostics"]
    return diagnostics


def _plain(type_text: str) -> str:
    return _MODULES.sub("", type_text)


def test_examples_have_no_pyright_errors(tmp_path: Path) -> None:
    (tmp_path / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "standard"}))
    errors = [d for d in _pyright(ROOT / "examples", cwd=tmp_path) if d["severity"] == "error"]
    assert errors == []


def test_typesafety_cases_agree_with_mypy(tmp_path: Path) -> None:
    expected: dict[str, dict[int, str | None]] = {}  # case -> line -> revealed type (None: an error)
    for spec in sorted((ROOT / "tests" / "typesafety").glob("*.yml")):
        for case in yaml.safe_load(spec.read_text()):
            name = f"{spec.stem}/{case['case']}"
            main: str = case["main"]
            (tmp_path / f"{spec.stem}__{case['case']}.py").write_text(main)
            lines: dict[int, str | None] = {}
            for number, line in enumerate(main.splitlines(), 1):
                if (match := _REVEAL.search(line)) is not None:
                    lines[number] = _plain(match.group(1))
                elif "# E:" in line:
                    lines[number] = None
            for match in re.finditer(r"^main:(\d+): error:", case.get("out") or "", re.M):
                lines[int(match.group(1))] = None
            expected[name] = lines
    (tmp_path / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "standard"}))

    revealed: dict[tuple[str, int], str] = {}
    rejected: set[tuple[str, int]] = set()
    for d in _pyright(tmp_path, cwd=tmp_path):
        name = Path(d["file"]).stem.replace("__", "/", 1)
        where = (name, d["range"]["start"]["line"] + 1)
        if d["severity"] == "error":
            rejected.add(where)
        elif d["severity"] == "information" and (match := re.search(r'is "(.*)"$', d["message"], re.S)):
            revealed.setdefault(where, _plain(match.group(1)))

    differences: set[tuple[str, int]] = set()
    verdicts: set[tuple[str, int]] = set()
    for name, lines in expected.items():
        for number, type_text in lines.items():
            where = (name, number)
            if type_text is None:
                if where not in rejected:
                    verdicts.add(where)
            elif revealed.get(where) != type_text:
                differences.add(where)
        for where in rejected:
            if where[0] == name and lines.get(where[1], "") is not None:
                verdicts.add(where)
    assert differences == set(KNOWN), {w: (expected[w[0]].get(w[1]), revealed.get(w)) for w in differences ^ set(KNOWN)}
    assert verdicts == set(KNOWN_VERDICTS)
