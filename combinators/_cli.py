"""The command line: ``python -m combinators run MODULE:ATTR --input JSON``.

``run`` imports ``MODULE`` (from the current directory too), takes the agent
at ``ATTR``, turns the ``--input`` JSON into the agent's input type with the
cattrs :data:`~combinators.converter`, runs the agent with a live progress
display on stderr (when stderr is a terminal and ``rich`` is installed),
and prints the success value as JSON on stdout.

The input type is ``--input-type MODULE:NAME`` when given; otherwise the
annotation of the first parameter of the leftmost leaf's function (the leaf
that receives the run's input), mapped up through any node class on the way
that defines ``_input_type(self, inner_type)`` (and ``each``, which turns
``T`` into ``list[T]``); ``Any`` (the JSON as is) when there is none.

``--estimate`` prints what the run can cost (``estimate``: most and happy
usage, and any node it cannot bound) and runs nothing; ``--budget JSON``
(``{"cost": 5.0}``) holds the run to a spend budget (docs/spend.md).

Exit status: 0 success; 1 the agent failed (the error value, as JSON, is
printed on stderr); 2 bad usage (a ``MODULE:ATTR`` that cannot be loaded,
input that is not JSON or does not fit the input type, a bad option
value, a ``--trace`` file that cannot be written), checked before the run
starts; 3 an agent raised an exception (a bug: the traceback is printed).
Values JSON cannot hold are printed as text (see :func:`json_data`), so
a run that succeeded exits 0 whatever it returned.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, get_type_hints

import trio
from returns.result import Success

from ._expr import Agent, Leaf
from ._journal import JournalMismatch
from ._json import converter, error_message, json_data, type_name
from ._mermaid import to_mermaid
from ._observe import TERMINAL, Event, EventKind, Observer, Recorder, combine
from ._report import build_report
from ._run import run
from ._spend import FIELDS, Usage
from ._trace import write_trace

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CRASHED = 3


class UsageError(Exception):
    """Bad command-line input; the message is printed as is."""


def load_object(spec: str) -> object:
    """The object named by ``MODULE:ATTR`` (``ATTR`` may be dotted)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        msg = f"expected MODULE:ATTR (like examples.pipeline:pipeline), got {spec!r}"
        raise UsageError(msg)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            msg = f"cannot load {spec}: cannot import module {module_name!r}: {exc}"
        else:  # the module imports something that is missing
            msg = f"cannot load {spec}: {_describe(exc)}"
        raise UsageError(msg) from exc
    except Exception as exc:  # noqa: BLE001 - any error while importing is the target's fault
        # A SyntaxError, or an exception raised by the module's own code.
        msg = f"cannot load {spec}: {_describe(exc)}"
        raise UsageError(msg) from exc
    obj: object = module
    done = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            msg = f"module {module_name!r} has no attribute {attr!r} ({done!r} has no {part!r})"
            raise UsageError(msg)
        obj = getattr(obj, part)
        done += ("." if done != module_name else ":") + part
    return obj


def _describe(exc: BaseException) -> str:
    """``Type: message (file:line)``: where in the user's module it went wrong."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        return text  # its message already names the file and line
    frames = traceback.extract_tb(exc.__traceback__)
    # The innermost frame outside importlib is the user's code.
    user = [f for f in frames if "importlib" not in f.filename]
    if user:
        text += f" ({user[-1].filename}:{user[-1].lineno})"
    return text


def load_agent(spec: str) -> Agent[Any, Any, Any]:
    """The agent named by ``MODULE:ATTR``, or a :class:`UsageError`."""
    obj = load_object(spec)
    if not isinstance(obj, Agent):
        hint = "; wrap a function with agent(), lift() or pure()" if callable(obj) else ""
        msg = f"{spec} is a {type(obj).__name__}, not an Agent{hint}"
        raise UsageError(msg)
    return obj


def _first_param_type(fn: Any) -> Any:
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    try:
        params = list(inspect.signature(target).parameters.values())
        hints = get_type_hints(target)
    except (TypeError, ValueError, NameError):
        return Any
    if not params:
        return Any
    return hints.get(params[0].name, Any)


def input_type(agent: Agent[Any, Any, Any]) -> Any:
    """The type of the run's input, from the leftmost leaf (see the module doc)."""
    spine: list[Agent[Any, Any, Any]] = []
    node = agent
    while True:
        spine.append(node)
        kids = node.children()
        if isinstance(node, Leaf) or not kids:
            break
        node = kids[0]
    tp: Any = _first_param_type(node.fn) if isinstance(node, Leaf) else Any
    for parent in reversed(spine[:-1]):
        hook = getattr(parent, "_input_type", None)
        if callable(hook):
            tp = hook(tp)
        elif parent.kind == "each":
            tp = list[tp]
    return tp


def parse_input(text: str, tp: Any) -> Any:
    """The ``--input`` JSON structured as ``tp``, or a :class:`UsageError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"--input is not valid JSON ({exc}): {text!r}"
        raise UsageError(msg) from exc
    try:
        return converter.structure(data, tp)
    except Exception as exc:
        msg = f"input does not fit {type_name(tp)}: {error_message(exc)}"
        raise UsageError(msg) from exc


def parse_budget(text: str, agent: Agent[Any, Any, Any]) -> Usage:
    """The ``--budget`` JSON (``{"cost": 5.0}``) as a ``Usage`` this tree can be held to."""
    from ._spend import Budget, check_budget

    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not set(data) <= set(FIELDS):
            raise ValueError(f"an object with some of the fields {', '.join(FIELDS)}")
        limit = Usage(**data)
        Budget(limit)
        check_budget(agent, limit, "--budget")
    except (ValueError, TypeError) as exc:
        msg = f"--budget {text!r}: {exc}"
        raise UsageError(msg) from exc
    return limit


def check_writable(file: str) -> None:
    """Refuse (:class:`UsageError`) a ``--trace`` file that cannot be written,
    before the run, so a long run does not end in an error and lose its output.

    Nothing is created: the directory must exist and be writable, and the
    file, if it exists, must be a writable file.
    """
    path = Path(file)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        msg = f"--trace {file}: is a directory"
    elif not parent.is_dir():
        msg = f"--trace {file}: directory {str(parent)!r} does not exist"
    elif not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        msg = f"--trace {file}: not writable"
    else:
        return
    raise UsageError(msg)


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


class _Progress:
    """A rich live display of the run: leaves done out of leaves in the tree."""

    def __init__(self, agent: Agent[Any, Any, Any], stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._total = sum(1 for n in agent.walk() if not n.children())
        self._done = 0
        self._running: dict[str, None] = {}
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(file=stream),
            transient=True,
        )
        self._task = self._progress.add_task("", total=self._total, name=agent.name)

    def __enter__(self) -> _Progress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event: Event) -> None:
        if event.node not in ("leaf", "const"):
            return
        if event.kind is EventKind.STARTED:
            self._running[event.path] = None
        elif event.kind in TERMINAL:
            self._running.pop(event.path, None)
            self._done += 1
        now = next(reversed(self._running), "") if self._running else ""
        self._progress.update(
            self._task,
            completed=self._done,
            total=max(self._total, self._done),
            description=f"{len(self._running)} running {now}",
        )


def _run_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    agent = load_agent(args.target)
    if args.input_type is not None:
        tp = load_object(args.input_type)
    else:
        tp = input_type(agent)
    text = sys.stdin.read() if args.input == "-" else args.input
    x = parse_input(text, tp)
    budget = parse_budget(args.budget, agent) if args.budget is not None else None
    if args.estimate:
        # Print what the run could cost and stop: nothing runs.
        from ._estimate import estimate

        stdout.write(estimate(agent if budget is None else agent.budget(budget), x).text() + "\n")
        return EXIT_OK
    if args.trace is not None:
        check_writable(args.trace)
    if args.mermaid:
        stderr.write(to_mermaid(agent))
    recorder = Recorder()
    show = not args.no_progress and stderr.isatty()
    progress = _rich_progress(agent, stderr) if show else None
    observer: Observer = recorder if progress is None else combine(recorder, progress)
    if (args.journal is None) != (args.run_id is None):
        raise UsageError("--journal and --run-id go together (resuming is the same command again)")
    journal = None
    if args.journal is not None:
        from ._journal import Journal

        try:
            journal = Journal.from_url(args.journal)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    go = functools.partial(
        run,
        agent,
        x,
        observer=observer,
        max_concurrency=args.max_concurrency,
        journal=journal,
        run_id=args.run_id,
        budget=budget,
    )
    crashed: BaseException | None = None
    result = None
    try:
        if progress is not None:
            with progress:
                result = trio.run(go)
        else:
            result = trio.run(go)
    except JournalMismatch as exc:
        # Found before anything ran: the journal holds another tree.
        stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except Exception as exc:
        crashed = exc
    if args.trace is not None:
        try:
            write_trace(recorder.events, args.trace)
        except OSError as exc:  # checked before the run; still, keep the result
            stderr.write(f"error: cannot write the trace: {exc}\n")
    if args.report:
        stderr.write(build_report(recorder.events).table() + "\n")
    if crashed is not None:
        stderr.write("".join(traceback.format_exception(crashed)))
        stderr.write(f"error: {agent.name} raised {type(crashed).__name__}: {crashed}\n")
        return EXIT_CRASHED
    assert result is not None
    if isinstance(result, Success):
        stdout.write(json.dumps(json_data(result.unwrap()), indent=2) + "\n")
        return EXIT_OK
    error = result.failure()
    data = json.dumps(json_data(error))
    stderr.write(f"error: {agent.name} failed with {type(error).__name__}: {data}\n")
    return EXIT_FAILED


def _rich_progress(agent: Agent[Any, Any, Any], stream: TextIO) -> _Progress | None:
    try:
        return _Progress(agent, stream)
    except ImportError:  # rich is the optional ``cli`` extra
        return None


def _mermaid_command(args: argparse.Namespace, stdout: TextIO) -> int:
    stdout.write(to_mermaid(load_agent(args.target)))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (exit 2 from ``main``,
    written to the stream ``main`` was given rather than always ``sys.stderr``)."""

    def error(self, message: str) -> NoReturn:
        msg = f"{message}\n{self.format_usage().rstrip()}"
        raise UsageError(msg)


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m combinators``."""
    p = _Parser(prog="python -m combinators", description="Run and inspect combinators agents.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an agent on one input and print its result as JSON")
    r.add_argument("target", metavar="MODULE:ATTR", help="the agent, e.g. examples.pipeline:pipeline")
    r.add_argument("--input", required=True, metavar="JSON", help="the input as JSON ('-' reads stdin)")
    r.add_argument("--input-type", metavar="MODULE:NAME", help="the input's type (default: from the first leaf)")
    r.add_argument("--trace", metavar="FILE", help="write a Chrome/Perfetto trace JSON to FILE")
    r.add_argument("--report", action="store_true", help="print the run report table on stderr")
    r.add_argument("--mermaid", action="store_true", help="print the Mermaid drawing of the agent on stderr")
    r.add_argument("--max-concurrency", type=positive_int, default=None, metavar="N", help="at most N leaves at once")
    r.add_argument("--no-progress", action="store_true", help="no live progress display")
    r.add_argument("--journal", metavar="URL", help="journal URL (sqlite:PATH or postgresql://...) to make the run resumable")
    r.add_argument("--run-id", metavar="ID", help="the run's id in the journal; run the same command again to resume")
    r.add_argument("--budget", metavar="JSON", help='a spend budget for the run, e.g. \'{"cost": 5.0}\' (docs/spend.md)')
    r.add_argument("--estimate", action="store_true", help="print what the run can cost (most, happy) and do not run it")
    m = sub.add_parser("mermaid", help="print the Mermaid drawing of an agent")
    m.add_argument("target", metavar="MODULE:ATTR")
    return p


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        args = parser().parse_args(argv)
        if args.command == "mermaid":
            return _mermaid_command(args, out)
        return _run_command(args, out, err)
    except UsageError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
