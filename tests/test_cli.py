"""The command line, run in a subprocess: success, failure, bad targets, bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from combinators import Recorder, combine, each, run
from combinators import Progress
from combinators._cli import UsageError, input_type, main, parse_input
from cli_agents import Order, batch, fan, place

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "combinators", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_success_prints_the_value_as_json() -> None:
    proc = cli("run", "tests.cli_agents:place", "--input", '{"symbol": "AAPL", "qty": 10}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"symbol": "AAPL", "cost": 15.0}


def test_failure_exits_non_zero_with_the_error() -> None:
    proc = cli("run", "tests.cli_agents:place", "--input", '{"symbol": "AAPL", "qty": 1000}')
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert 'error: place failed with Refused: {"reason": "1000 is too many"}' in proc.stderr


def test_an_exception_in_an_agent_exits_3_with_the_traceback() -> None:
    proc = cli("run", "tests.cli_agents:broken", "--input", "7")
    assert proc.returncode == 3
    assert "RuntimeError: cannot handle 7" in proc.stderr
    assert "Traceback" in proc.stderr and "combinators: raised in node 'broken'" in proc.stderr


def test_bad_module_attr() -> None:
    cases = {
        "tests.cli_agents": "expected MODULE:ATTR",
        "tests.no_such_module:x": "cannot import module 'tests.no_such_module'",
        "tests.cli_agents:nope": "error: cannot load tests.cli_agents:nope: module 'tests.cli_agents' has no attribute 'nope'\n",
        "tests.cli_agents:place.nope": "error: cannot load tests.cli_agents:place.nope: 'tests.cli_agents:place' has no attribute 'nope'\n",
        "tests.cli_exits:x": "error: cannot load tests.cli_exits:x: importing module 'tests.cli_exits' called sys.exit(0)",
        "tests.cli_agents:not_an_agent": "tests.cli_agents:not_an_agent is a int, not an Agent",
        "tests.cli_agents:plain_function": "wrap a function with agent(), lift() or pure()",
    }
    for target, message in cases.items():
        proc = cli("run", target, "--input", "1")
        assert proc.returncode == 2, (target, proc.stderr)
        assert message in proc.stderr, (target, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_input_that_does_not_fit_names_the_field() -> None:
    proc = cli("run", "tests.cli_agents:place", "--input", '{"symbol": "AAPL", "qty": "ten"}')
    assert proc.returncode == 2
    assert "error: input does not fit Order: $.qty: expected int, got str 'ten'" in proc.stderr
    proc = cli("run", "tests.cli_agents:place", "--input", '{"qty": 1}')
    assert "$.symbol: required field missing" in proc.stderr
    proc = cli("run", "tests.cli_agents:double", "--input", "{not json")
    assert proc.returncode == 2 and "--input is not valid JSON" in proc.stderr


def test_trace_report_and_mermaid(tmp_path: Path) -> None:
    trace = tmp_path / "run.json"
    proc = cli("run", "tests.cli_agents:fan", "--input", "1", "--trace", str(trace), "--report", "--mermaid")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [4, 4]
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["args"]["path"] for e in events if e["ph"] == "X"} == {
        "fan",
        "fan/double",
        "fan/par",
        "fan/par/double",
        "fan/par/again",
    }
    assert "flowchart LR" in proc.stderr and 'subgraph s1["fan"]' in proc.stderr
    assert "critical path: fan/double" in proc.stderr


def test_mermaid_command_and_each_input() -> None:
    proc = cli("mermaid", "tests.cli_agents:fan")
    assert proc.returncode == 0 and proc.stdout.startswith("flowchart LR\n")
    proc = cli("run", "tests.cli_agents:batch", "--input", "[1, 2, 3]", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [2, 4, 6]


def test_the_example_pipeline_runs_from_the_command_line() -> None:
    proc = cli("run", "examples.pipeline:pipeline", "--input", '"MSFT"')
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["symbol"] == "MSFT" and out["signal"] in ("buy", "sell")


def test_input_type_comes_from_the_leftmost_leaf() -> None:
    assert input_type(place) is Order
    assert input_type(fan) is int
    assert input_type(batch) == list[int]
    assert input_type(place.named("x").timeout(1)) is Order


def test_in_process_main_with_explicit_input_type() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["run", "cli_agents:place", "--input", '{"symbol": "A", "qty": 2}', "--input-type", "cli_agents:Order"],
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue()) == {"symbol": "A", "cost": 3.0}


async def test_progress_display_follows_the_leaves() -> None:
    stream = io.StringIO()
    progress = Progress(fan, console=stream, transient=True)
    rec = Recorder()
    with progress:
        result: Any = await run(fan, 1, observer=combine(rec, progress))
    assert result.unwrap() == (4, 4)
    assert (progress.started, progress.done, progress.running) == (3, 3, 0)


def test_the_observe_example_runs_as_a_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "examples/observe_run.py", "GOOGL", str(tmp_path / "t.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "critical path: analyze/fetch_quote.retry/fetch_quote > analyze/analyses/par/quality" in proc.stdout


def test_journal_makes_the_same_command_resume(tmp_path: Path) -> None:
    import os

    counter = tmp_path / "count.txt"
    env = {**os.environ, "COMBINATORS_CLI_COUNTER": str(counter)}
    args = [
        sys.executable, "-m", "combinators", "run", "tests.cli_agents:counted", "--input", "4",
        "--journal", f"sqlite:{tmp_path / 'runs.db'}", "--run-id", "r1", "--no-progress",
    ]
    for _ in range(2):
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == 12
    assert counter.read_text().splitlines() == ["4"]  # the second run replayed it
    missing = cli("run", "tests.cli_agents:counted", "--input", "4", "--journal", "memory:")
    assert missing.returncode == 2
    assert "--run-id" in missing.stderr


def test_a_changed_tree_under_the_same_run_id_is_a_usage_error(tmp_path: Path) -> None:
    journal = f"sqlite:{tmp_path / 'runs.db'}"
    first = in_process("run", "tests.cli_agents:fan", "--input", "1", "--journal", journal, "--run-id", "x", "--no-progress")
    assert first[0] == 0, first[2]
    code, out, err = in_process(
        "run", "tests.cli_agents:batch", "--input", "[1]", "--journal", journal, "--run-id", "x", "--no-progress"
    )
    assert code == 2
    assert out == ""
    assert "Traceback" not in err and "error:" in err and "fan" in err


def in_process(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_a_bad_option_value_is_usage() -> None:
    for value in ("0", "-3", "many"):
        code, out, err = in_process("run", "cli_agents:double", "--input", "1", "--max-concurrency", value)
        assert code == 2, err
        assert "--max-concurrency: must be a whole number of at least 1" in err and "usage:" in err
        assert "Traceback" not in err and out == ""
    proc = cli("run", "tests.cli_agents:double", "--input", "1", "--max-concurrency", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_a_module_that_cannot_be_loaded_is_usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cli_raises_on_import.py").write_text("x = 1\nraise RuntimeError('no config')\n")
    (tmp_path / "cli_syntax_error.py").write_text("def broken(:\n    pass\n")
    (tmp_path / "cli_missing_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {
        "cli_raises_on_import:x": "cannot load cli_raises_on_import:x: RuntimeError: no config (",
        "cli_syntax_error:broken": "cannot load cli_syntax_error:broken: SyntaxError:",
        "cli_missing_dep:x": "cannot load cli_missing_dep:x: ModuleNotFoundError: No module named 'no_such_dependency_xyz'",
    }
    for target, message in cases.items():
        for command in (["run", target, "--input", "1"], ["mermaid", target]):
            code, out, err = in_process(*command)
            assert code == 2, (target, err)
            assert message in err, (target, err)
            assert "Traceback" not in err and out == ""
    code, _, err = in_process("run", "cli_agents:double", "--input", "1", "--input-type", "cli_raises_on_import:T")
    assert code == 2 and "cannot load cli_raises_on_import:T" in err
    # The location in the user's module is named.
    assert "cli_raises_on_import.py:2" in in_process("mermaid", "cli_raises_on_import:x")[2]


def test_a_module_that_cannot_be_loaded_from_the_shell(tmp_path: Path) -> None:
    (tmp_path / "cli_shell_broken.py").write_text("1 / 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "combinators", "run", "cli_shell_broken:x", "--input", "1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "error: cannot load cli_shell_broken:x: ZeroDivisionError: division by zero" in proc.stderr
    assert "Traceback" not in proc.stderr


ODD_VALUES = '''
from combinators import pure


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def make_set(x: int) -> set[int]:
    return {x + 2, x, x + 1}


def make_object(x: int) -> object:
    return Opaque()


def make_mixed(x: int) -> dict[str, object]:
    return {"ids": frozenset({"b", "a"}), "thing": Opaque(), "pair": (x, None)}


a_set = pure(make_set)
an_object = pure(make_object)
mixed = pure(make_mixed)
'''


def test_a_success_json_cannot_hold_still_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cli_odd_values.py").write_text(ODD_VALUES)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = in_process("run", "cli_odd_values:a_set", "--input", "1", "--no-progress")
    assert (code, json.loads(out)) == (0, [1, 2, 3]), err
    code, out, err = in_process("run", "cli_odd_values:an_object", "--input", "1", "--no-progress")
    assert (code, json.loads(out)) == (0, "<opaque>"), err
    code, out, err = in_process("run", "cli_odd_values:mixed", "--input", "4", "--no-progress")
    assert (code, json.loads(out)) == (0, {"ids": ["a", "b"], "thing": "<opaque>", "pair": [4, None]}), err


def test_an_unwritable_trace_file_is_refused_before_the_run(tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    env = {**os.environ, "COMBINATORS_CLI_COUNTER": str(counter)}
    for trace in ("/nonexistent/dir/t.json", str(tmp_path)):
        proc = subprocess.run(
            [sys.executable, "-m", "combinators", "run", "tests.cli_agents:counted", "--input", "4", "--trace", trace],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert f"error: --trace {trace}:" in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stdout == ""
    assert not counter.exists()  # the agent never ran
    code, out, err = in_process("run", "cli_agents:double", "--input", "2", "--trace", "t.json.d/x.json")
    assert code == 2 and "does not exist" in err


def test_a_bad_element_of_a_list_input_names_the_whole_type() -> None:
    code, _, err = in_process("run", "cli_agents:batch", "--input", '[1, "x", 3]', "--no-progress")
    assert code == 2
    assert "error: input does not fit list[int]: $[1]: expected int, got str 'x'" in err
    with pytest.raises(UsageError, match=r"input does not fit list\[Order\]: \$\[1\]\.qty: expected int"):
        parse_input('[{"symbol": "A", "qty": 1}, {"symbol": "B", "qty": "x"}]', input_type(each(place)))


# -- exit codes that tell the truth (issue 15) ------------------------------------------------------


def run_here(*args: str) -> tuple[int, str, str]:
    return in_process("run", *args, "--no-progress")


def test_a_huge_int_result_is_written_whole() -> None:
    code, out, err = run_here("cli_agents:huge", "--input", "1")
    assert code == 0, err
    assert "Traceback" not in err
    assert out.endswith("1\n") and len(out.strip()) == 5001  # every digit
    assert int(out.strip()[:10]) == 10**9


@pytest.mark.parametrize(("target", "why"), [("circular", "it contains itself"), ("deep", "it is nested 100001 levels deep")])
def test_a_result_json_cannot_hold_is_printed_as_text_with_a_warning(target: str, why: str) -> None:
    code, out, err = run_here(f"cli_agents:{target}", "--input", "1")
    assert code == 0, err  # the run succeeded (docs: "exits 0 whatever it returned")
    assert "Traceback" not in err
    assert err == f"warning: {target} succeeded with a list that JSON cannot hold ({why}); printed as text\n"
    assert json.loads(out).startswith("[")


def test_deeply_nested_input_is_bad_usage() -> None:
    code, out, err = run_here("cli_agents:double", "--input", "[" * 100_000 + "]" * 100_000)
    assert code == 2
    assert err.startswith("error: --input is nested too deeply to read") and err.count("\n") == 1
    assert out == ""


def test_a_journal_that_cannot_be_opened_is_bad_usage_naming_the_url() -> None:
    code, out, err = run_here(
        "cli_agents:double", "--input", "1", "--journal", "sqlite:/nonexistent/j.db", "--run-id", "r"
    )
    assert code == 2
    assert err.startswith("error: --journal sqlite:/nonexistent/j.db: cannot open the journal: OperationalError")
    assert "double raised" not in err and err.count("\n") == 1


def test_a_module_that_exits_on_import_is_bad_usage_in_a_subprocess_too() -> None:
    proc = cli("run", "tests.cli_exits:agent", "--input", "1")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot load tests.cli_exits:agent: importing module 'tests.cli_exits' called sys.exit(0)")
    assert "Traceback" not in proc.stderr


def test_an_exception_names_the_node_that_raised_it() -> None:
    code, _, err = run_here("cli_agents:broken", "--input", "7")
    assert code == 3
    assert err.splitlines()[-1] == "error: broken: raised in node 'broken': RuntimeError: cannot handle 7"


def test_a_journal_url_is_printed_without_its_password() -> None:
    code, _, err = run_here(
        "cli_agents:double", "--input", "1", "--journal", "postgresql://me:s3cret@127.0.0.1:1/nodb", "--run-id", "r"
    )
    assert code == 2
    assert err.startswith("error: --journal postgresql://me:***@127.0.0.1:1/nodb: cannot open the journal: ")
    assert "s3cret" not in err
    assert err.count("\n") == 1  # one line, whatever the driver's message


@pytest.mark.parametrize("url", ["sqllite:runs.db", "bogus:x"])
def test_an_unknown_journal_scheme_is_usage_and_creates_no_file(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: a file named ``sqllite:runs.db`` (or ``bogus:x``) created silently."""
    monkeypatch.chdir(tmp_path)
    code, out, err = in_process("run", "cli_agents:double", "--input", "1", "--journal", url, "--run-id", "r",
                                "--no-progress")
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    assert "unknown journal scheme" in err and "sqlite:PATH" in err and "postgresql://" in err
    assert list(tmp_path.iterdir()) == []


def test_a_journal_path_with_a_colon_after_a_slash_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = in_process("run", "cli_agents:double", "--input", "1", "--journal", "./a:b.db", "--run-id", "r",
                                "--no-progress")
    assert code == 0, err
    assert (tmp_path / "a:b.db").exists()
