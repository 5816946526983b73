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
printed on stderr); 2 bad usage (a ``MODULE:ATTR`` that cannot be loaded
or exits when imported, input that is not JSON, too deep, or does not fit
the input type, a bad option value, a ``--trace`` file that cannot be
written, a ``--journal`` that cannot be opened), checked before the run
starts; 3 an agent raised an exception (a bug: the traceback is printed,
and the last line names the node or function that raised, from its note).
Values JSON cannot hold are printed as text (see :func:`json_data`; one
that contains itself or is too deep as its bounded ``repr``, with a
warning), so a run that succeeded exits 0 whatever it returned.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import inspect
import json
import os
import reprlib
import sys
import traceback
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, get_type_hints

import trio
from returns.result import Success

from ._aio_leaf import has_asyncio_leaves
from ._expr import Agent, Leaf
from ._journal import JournalMismatch
from ._json import converter, error_message, json_data, type_name
from ._mermaid import to_mermaid
from ._observe import Observer, Recorder, combine
from ._progress import Progress
from ._report import build_report
from ._run import run
from ._exceptions import FIELDS, Usage
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
    except SystemExit as exc:
        # The module ran a script's ``sys.exit()`` when imported: it is not
        # the agent's result, whatever its code.
        msg = f"cannot load {spec}: importing module {module_name!r} called sys.exit({exc.code!r}){_where(exc)}"
        raise UsageError(msg) from exc
    obj: object = module
    done = f"module {module_name!r}"
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            msg = f"cannot load {spec}: {done} has no attribute {part!r}"
            raise UsageError(msg)
        obj = getattr(obj, part)
        done = repr(f"{module_name}:{'.'.join(attr.split('.')[: i + 1])}")
    return obj


def _describe(exc: BaseException) -> str:
    """``Type: message (file:line)``: where in the user's module it went wrong."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        return text  # its message already names the file and line
    return text + _where(exc)


def _where(exc: BaseException) -> str:
    """`` (file:line)`` of the innermost frame outside importlib: the user's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    return f" ({user[-1].filename}:{user[-1].lineno})" if user else ""


def load_agent(spec: str) -> Agent[Any, Any, Any]:
    """The agent named by ``MODULE:ATTR``, or a :class:`UsageError`."""
    obj = load_object(spec)
    if not isinstance(obj, Agent):
        hint = "; wrap a function with agent(), lift() or pure()" if callable(obj) else ""
        msg = f"{spec} is a {type(obj).__name__}, not an Agent{hint}"
        raise UsageError(msg)
    return obj


def _first_param_type(fn: Any) -> Any:
    fn = inspect.unwrap(fn)  # an asyncio leaf's bridge wraps the user's function
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
        msg = f"--input is not valid JSON ({exc}): {_clip(text)}"
        raise UsageError(msg) from exc
    except RecursionError as exc:
        msg = f"--input is nested too deeply to read (Python's JSON reader stops near {sys.getrecursionlimit()} levels)"
        raise UsageError(msg) from exc
    try:
        return converter.structure(data, tp)
    except Exception as exc:
        msg = f"input does not fit {type_name(tp)}: {error_message(exc)}"
        raise UsageError(msg) from exc


def parse_budget(text: str, agent: Agent[Any, Any, Any]) -> Usage:
    """The ``--budget`` JSON (``{"cost": 5.0}``) as a ``Usage`` this tree can be held to."""
    from ._budget import Budget
    from ._expr import check_budget

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


def _clip(text: str, most: int = 200) -> str:
    """``repr(text)``, cut to ``most`` characters: a message stays one readable line."""
    shown = repr(text)
    return shown if len(shown) <= most else f"{shown[:most]}... ({len(text)} characters)"


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
        stderr.write(_drawing(agent))
    recorder = Recorder()
    show = not args.no_progress and stderr.isatty()
    progress = _rich_progress(agent, stderr) if show else None
    observer: Observer = recorder if progress is None else combine(recorder, progress)
    if (args.journal is None) != (args.run_id is None):
        raise UsageError("--journal and --run-id go together (resuming is the same command again)")
    journal = None
    if args.journal is not None:
        from ._journal_store import Journal

        try:
            journal = Journal.from_url(args.journal)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        try:
            # Open it now: a journal that cannot be opened is the journal's
            # (or the URL's) fault, found before the run, not the agent's.
            trio.run(journal.records, args.run_id)
        except Exception as exc:
            msg = f"--journal {_redacted(args.journal)}: cannot open the journal: {type(exc).__name__}: {_one_line(exc)}"
            raise UsageError(msg) from exc
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
    if has_asyncio_leaves(agent):
        # Leaves that run on asyncio: the run goes through an asyncio loop
        # (combinators.aio, docs/asyncio.md), with the same arguments.
        from . import aio

        def start() -> Any:
            return asyncio.run(aio.run(*go.args, **go.keywords))
    else:

        def start() -> Any:
            return trio.run(go)

    crashed: BaseException | None = None
    result = None
    try:
        if progress is not None:
            with progress:
                result = start()
        else:
            result = start()
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
        stderr.write(f"error: {_culprit(agent, crashed)} {type(crashed).__name__}: {crashed}\n")
        return EXIT_CRASHED
    assert result is not None
    if isinstance(result, Success):
        value = result.unwrap()
        try:
            text = _json_text(value)
        except (ValueError, TypeError, RecursionError):
            # The run succeeded (exit 0, as documented): JSON cannot hold
            # this value, so it is printed as text, and stderr says why.
            stderr.write(
                f"warning: {agent.name} succeeded with a {type(value).__name__} that JSON cannot hold "
                f"({_shape_problem(value)}); printed as text\n"
            )
            text = json.dumps(_as_text(value))
        stdout.write(text + "\n")
        return EXIT_OK
    error = result.failure()
    data = json.dumps(json_data(error))
    stderr.write(f"error: {agent.name} failed with {type(error).__name__}: {data}\n")
    return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (a driver's may span several)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (it is about to be printed)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _culprit(agent: Agent[Any, Any, Any], exc: BaseException) -> str:
    """Who raised ``exc``: the node or function its note names, else the run itself.

    An exception from user code (a leaf, a function given to a combinator,
    an observer) carries the interpreter's note; one without it came from
    the machinery around the run (a journal that failed mid-run, say).
    """
    for note in getattr(exc, "__notes__", ()):
        if note.startswith(_NOTE):
            return f"{agent.name}: {note.removeprefix(_NOTE).strip()}:"
    return f"the run of {agent.name} stopped on"


_NOTE = "combinators: "


def _json_text(value: object) -> str:
    """``value`` as indented JSON; big ints are written whole (JSON has no digit limit)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(json_data(value), indent=2, allow_nan=True)
    finally:
        sys.set_int_max_str_digits(limit)


def _as_text(value: object) -> str:
    """``repr(value)``, bounded in depth (a value that contains itself, or a deep one)."""
    shown = reprlib.Repr()
    shown.maxlevel = 64
    shown.maxlist = shown.maxtuple = shown.maxdict = shown.maxset = shown.maxfrozenset = shown.maxdeque = 10**6
    shown.maxstring = shown.maxlong = shown.maxother = 10**6
    try:
        return shown.repr(value)
    except Exception:  # noqa: BLE001 - last resort: a repr that raises
        return f"<{type(value).__name__}>"


def _shape_problem(value: object) -> str:
    """Why JSON cannot hold ``value``: it contains itself, or how deep it is (iterative walk)."""
    deepest = 0
    on_path: set[int] = set()
    stack: list[tuple[object, int, bool]] = [(value, 1, False)]
    while stack:
        item, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(item))
            continue
        if isinstance(item, dict):
            kids: list[object] = list(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            kids = list(item)
        else:
            continue
        if id(item) in on_path:
            return "it contains itself"
        on_path.add(id(item))
        deepest = max(deepest, depth)
        stack.append((item, depth, True))
        stack.extend((kid, depth + 1, False) for kid in kids)
    if deepest >= 100:
        return f"it is nested {deepest} levels deep"
    return "it has a value JSON has no form for"


def _rich_progress(agent: Agent[Any, Any, Any], stream: TextIO) -> Progress | None:
    try:
        return Progress(agent, console=stream, transient=True)
    except ImportError:  # rich is the optional ``cli`` extra
        return None


def _drawing(agent: Agent[Any, Any, Any]) -> str:
    """``to_mermaid(agent)``; a tree too deep to draw is bad usage (exit 2), not a crash."""
    try:
        return to_mermaid(agent)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _mermaid_command(args: argparse.Namespace, stdout: TextIO) -> int:
    stdout.write(_drawing(load_agent(args.target)))
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
