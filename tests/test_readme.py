"""The README's first example runs, prints what it says, and type-checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match is not None
    return match.group(1)


def test_readme_example_runs_and_prints_the_claimed_result(tmp_path: Path) -> None:
    code = readme_example()
    claimed = re.search(r"# (<Success: .*>)", code)
    assert claimed is not None
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, cwd=ROOT)
    assert proc.stdout.strip() == claimed.group(1)


def test_readme_example_type_checks(tmp_path: Path) -> None:
    code = readme_example() + "\nreveal_type(pipeline)\n"
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert "Agent[str, str, str | combinators._exceptions.TimedOut]" in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stdout


def test_readme_quick_start_commands_are_the_ci_commands() -> None:
    text = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "uv run python -m examples.pipeline" in text
    assert "uv run --all-extras pytest" in text
    assert "uv run --all-extras pytest" in ci
