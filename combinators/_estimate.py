"""What a run can cost, read from the tree before it runs (``estimate``).

The tree is data (DESIGN §1), so its spend can be bounded without running
anything: every leaf call uses at most what it declared (``.costs``), and
each node says how many times its children may run.  ``most`` counts every
call any run could make: every attempt of a ``.retry``, both sides of a
``.fallback``, every operand of ``|``, ``first_success``, ``vote`` and
friends, every round of ``repeat``, and ``each`` once per element; a
``.budget`` caps what its subtree can spend in one run (when leaves charge
at most what they declare, which budgets also rely on).  ``happy`` counts a
run where every leaf succeeds on its first attempt.

Counted multipliers flow down the tree (a leaf under ``each`` of 10 under a
``.retry(2)`` runs at most 30 times), so budgets below a fan-out are capped
in the run's total, as they are enforced.  The walk uses an explicit stack:
a chain of 100,000 ``>>`` is fine.
"""

from __future__ import annotations

import math
from collections.abc import Sized
from fractions import Fraction
from typing import Any, Final, TypeAlias, TypeVar

import attrs

from ._expr import (
    segments,
    Agent,
    Budgeted,
    Const,
    Fallback,
    Leaf,
    Limit,
    MapError,
    Parallel,
    Prioritized,
    Rate,
    Recover,
    Retry,
    Then,
    Timeout,
    Transform,
)
from ._exceptions import FIELDS, Usage, _exact
from ._budget import Budget

_I = TypeVar("_I")

#: Exact amounts per field; ``math.inf`` where nothing bounds it.
_Num: TypeAlias = "int | Fraction | float"
_Vec: TypeAlias = "tuple[_Num, ...]"
_ZERO: Final[_Vec] = (0, 0, 0, 0)
_INF: Final[_Vec] = (math.inf,) * 4

_K = TypeVar("_K", bound=type)

#: Node kinds defined above the core (the orchestrators' task pool) that
#: run each of their ``operands`` at most once, on the node's own input.
_GROUPS: set[type] = set()


def estimates_as_group(kind: _K) -> _K:
    """Register ``kind`` (a node class with ``operands``) to be bounded like ``|``: the sum of its operands.

    For a node kind that lives above the core, so that this module does not
    import it (``@compiles`` is its twin for running).
    """
    _GROUPS.add(kind)
    return kind


@attrs.frozen
class Unbounded:
    """A node whose spend the tree cannot bound, and what to state to bound it.

    >>> from combinators import Usage, each, pure
    >>> ask = pure(str.upper).costs(Usage(calls=1))
    >>> est = estimate(pure(str.split) >> each(ask), "a b")
    >>> est.bounded, [u.path for u in est.unbounded]
    (False, ['seq/each'])
    """

    path: str
    reason: str


@attrs.frozen
class Estimate:
    """What one run of a tree can use (``most``) and uses when nothing fails (``happy``).

    Both read like limits: a field is ``None`` when nothing bounds it — no
    leaf declares it (it is not counted), or a node in ``unbounded`` leaves
    it open (``unbounded_fields`` names those).  ``happy`` is exact when
    every count is known; where the tree does not say which branch or how
    many rounds (``switch``/``when``: the dearest branch, ``repeat``: every
    round, ``first_success``: every operand in full, though the winner may
    cancel the others early) it is the most such a run can use.

    >>> from combinators import Usage, each, pure
    >>> ask = pure(str.upper).costs(Usage(calls=1, cost=0.25))
    >>> est = estimate(each(ask.retry(2).fallback(ask)), ["a", "b"])
    >>> est.most, est.happy
    (Usage(calls=8, input_tokens=None, output_tokens=None, cost=2.0), Usage(calls=2, input_tokens=None, output_tokens=None, cost=0.5))
    """

    most: Usage
    happy: Usage
    unbounded: tuple[Unbounded, ...] = ()
    unbounded_fields: tuple[str, ...] = ()
    happy_unbounded_fields: tuple[str, ...] = ()

    @property
    def bounded(self) -> bool:
        """Does ``most`` bound every field (no field left open by ``unbounded`` nodes)?"""
        return not self.unbounded_fields

    def text(self) -> str:
        """A few lines for people (the command line's ``--estimate``)."""
        lines = [
            f"most:  {_text(self.most, self.unbounded_fields)}",
            f"happy: {_text(self.happy, self.happy_unbounded_fields)}",
        ]
        for u in self.unbounded:
            lines.append(f"unbounded at {u.path}: {u.reason}")
        return "\n".join(lines)


def _text(u: Usage, unbounded: tuple[str, ...]) -> str:
    parts = [f"{f}={getattr(u, f)}" for f in u.set_fields()]
    parts += [f"{f}=unbounded" for f in unbounded]
    return ", ".join(parts) or "nothing declared"


def estimate(agent: Agent[_I, Any, Any], x: _I) -> Estimate:
    """Bound what running ``agent`` on ``x`` can use, without running it.

    ``x`` gives the element count of an ``each`` that receives it (the
    root's input, or an operand's of a group at the root); a fan-out over
    a list computed at run time needs ``each(..., at_most=n)``, else the
    estimate names it in ``unbounded``.  ``x`` is never iterated: an
    iterator counts as unknown.

    >>> from combinators import Usage, each, pure
    >>> ask = pure(str.upper).costs(Usage(calls=1, cost=0.5))
    >>> estimate(each(ask.retry(1)), ["a", "b", "c"]).most
    Usage(calls=6, input_tokens=None, output_tokens=None, cost=3.0)
    """
    if not isinstance(agent, Agent):
        msg = f"estimate() expects an Agent, got {type(agent).__name__} {agent!r}"
        raise TypeError(msg)
    walker = _Walker()
    most, happy = walker.run(agent, x)
    declared = walker.declared
    # A field is open where nothing bounds it: a declared one under an
    # unknown count, or any field below a bind (its leaves are unknown).
    open_most = tuple(f for i, f in enumerate(FIELDS) if most[i] == math.inf)
    open_happy = tuple(f for i, f in enumerate(FIELDS) if happy[i] == math.inf)
    return Estimate(_usage(most, declared), _usage(happy, declared), tuple(walker.notes), open_most, open_happy)


def _usage(v: _Vec, declared: set[str]) -> Usage:
    def count(i: int) -> int | None:
        n = v[i]
        return None if FIELDS[i] not in declared or n == math.inf else int(n)

    cost = v[3]
    return Usage(
        count(0), count(1), count(2), None if "cost" not in declared or cost == math.inf else float(cost)
    )


def _mul(k: _Num, v: _Num) -> _Num:
    if k == 0 or v == 0:
        return 0  # never inf * 0: a node that does not run costs nothing
    return k * v


def _scale(k: _Num, v: _Vec) -> _Vec:
    return tuple(_mul(k, a) for a in v)


def _add(a: _Vec, b: _Vec) -> _Vec:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _vector(u: Usage | None) -> _Vec:
    if u is None:
        return _ZERO
    return tuple(0 if v is None else _exact(v) for v in u._values())


_UNKNOWN: Final[Any] = object()

# Frame kinds of the walk.
_SUM: Final = 0
_MAX: Final = 1
_CAP: Final = 2


class _Walker:
    """The iterative walk: visit frames push children, combine frames add them up."""

    def __init__(self) -> None:
        self.declared: set[str] = set()
        self.notes: list[Unbounded] = []

    def run(self, root: Agent[Any, Any, Any], x: object) -> tuple[_Vec, _Vec]:
        # ("visit", node, k_most, k_happy, input, path) or ("combine", how, n, extra)
        todo: list[tuple[Any, ...]] = [("visit", root, 1, 1, x, root.name)]
        results: list[tuple[_Vec, _Vec]] = []
        while todo:
            frame = todo.pop()
            if frame[0] == "combine":
                _, how, n, extra = frame
                parts = results[len(results) - n :] if n else []
                del results[len(results) - n :]
                results.append(self._combine(how, parts, extra))
                continue
            _, node, km, kh, inp, path = frame
            self._visit(node, km, kh, inp, path, todo, results)
        assert len(results) == 1
        return results[0]

    def _combine(self, how: int, parts: list[tuple[_Vec, _Vec]], extra: Any) -> tuple[_Vec, _Vec]:
        if how == _MAX:
            most = tuple(max(vs) for vs in zip(*(p[0] for p in parts), strict=True)) if parts else _ZERO
            happy = tuple(max(vs) for vs in zip(*(p[1] for p in parts), strict=True)) if parts else _ZERO
            return most, happy
        most, happy = _ZERO, _ZERO
        for m, h in parts:
            most, happy = _add(most, m), _add(happy, h)
        if how == _CAP:
            limit: Usage = extra
            most = tuple(a if lim is None else min(a, _exact(lim)) for a, lim in zip(most, limit._values(), strict=True))
        return most, happy

    def _visit(
        self,
        node: Agent[Any, Any, Any],
        km: _Num,
        kh: _Num,
        inp: object,
        path: str,
        todo: list[tuple[Any, ...]],
        results: list[tuple[_Vec, _Vec]],
    ) -> None:
        from ._control import Repeat, Switch, When
        from ._expr import Bind, OnExecutor
        from ._fanout import Aggregate, AverageConfidence, Collect, Each, FirstSuccess, Vote
        from ._workflow import WorkflowNode

        if isinstance(node, Leaf):
            if node.spend is not None:
                self.declared.update(node.spend.set_fields())
            v = _vector(node.spend)
            results.append((_scale(km, v), _scale(kh, v)))
            return
        if isinstance(node, Const):
            results.append((_ZERO, _ZERO))
            return

        def kid(child: Agent[Any, Any, Any], seg: str, m: _Num, h: _Num, child_input: object) -> tuple[Any, ...]:
            return ("visit", child, m, h, child_input, path + seg)

        def group(children: tuple[Agent[Any, Any, Any], ...], how: int = _SUM, extra: Any = None,
                  same_input: bool = True, m: _Num = km, h: _Num = kh) -> None:
            todo.append(("combine", how, len(children), extra))
            segs = segments(children)
            # Pushed in reverse so children are combined in order (order does not matter for sums).
            for child, seg in zip(reversed(children), reversed(segs), strict=True):
                todo.append(kid(child, seg, m, h, inp if same_input else _UNKNOWN))

        if isinstance(node, Then):
            (s1, s2) = segments((node.first, node.second))
            todo.append(("combine", _SUM, 2, None))
            todo.append(kid(node.second, s2, km, kh, _UNKNOWN))
            todo.append(kid(node.first, s1, km, kh, inp))
            return
        if isinstance(node, Parallel | Vote | AverageConfidence | Aggregate | FirstSuccess):
            group(tuple(node.operands))
            return
        if type(node) in _GROUPS:
            group(tuple(getattr(node, "operands")))  # noqa: B009 - a registered kind's field
            return
        if isinstance(node, Transform | MapError | Recover | Timeout | Limit | Prioritized | Rate | OnExecutor | Collect):
            group((node.inner,))
            return
        if isinstance(node, Budgeted):
            limit = node.limit.limit if isinstance(node.limit, Budget) else node.limit
            self.declared.update(limit.set_fields())  # counted: a budget limits it
            group((node.inner,), _CAP, limit)
            return
        if isinstance(node, Retry):
            group((node.inner,), m=_mul(km, node.times + 1))
            return
        if isinstance(node, Fallback):
            s1, s2 = segments((node.primary, node.backup))
            todo.append(("combine", _SUM, 2, None))
            todo.append(kid(node.backup, s2, km, 0, inp))
            todo.append(kid(node.primary, s1, km, kh, inp))
            return
        if isinstance(node, Each):
            n = self._count(node, inp, path)
            group((node.inner,), same_input=False, m=_mul(km, n), h=_mul(kh, n))
            return
        if isinstance(node, Repeat):
            group((node.step,), same_input=False, m=_mul(km, node.max_times), h=_mul(kh, node.max_times))
            return
        if isinstance(node, Switch):
            branches = node.branches + ((node.default,) if node.default is not None else ())
            group(tuple(branches), _MAX)
            return
        if isinstance(node, When):
            group((node.then, node.otherwise), _MAX)
            return
        if isinstance(node, WorkflowNode):
            todo.append(("combine", _SUM, len(node.agents), None))
            for i in reversed(range(len(node.agents))):
                child_input = inp if not node.data[i] else _UNKNOWN
                todo.append(kid(node.agents[i], f"/{node.names[i]}", km, kh, child_input))
            return
        if isinstance(node, Bind):
            self.notes.append(
                Unbounded(path, "bind chooses its agent at run time; put a .budget() around it to bound it")
            )
            todo.append(("combine", _SUM, 2, None))
            results.append((_scale(km, _INF), _scale(kh, _INF)))
            todo.append(kid(node.inner, segments((node.inner,))[0], km, kh, inp))
            return
        self.notes.append(Unbounded(path, f"estimate() knows no rule for {node.kind!r} nodes"))
        results.append((_scale(km, _INF), _scale(kh, _INF)))

    def _count(self, node: Any, inp: object, path: str) -> _Num:
        at_most: int | None = node.at_most
        if inp is not _UNKNOWN and isinstance(inp, Sized) and not isinstance(inp, str | bytes | dict):
            n = len(inp)
            return n if at_most is None else min(n, at_most)
        if inp is not _UNKNOWN and isinstance(inp, str | bytes | dict):
            return len(inp) if at_most is None else min(len(inp), at_most)
        if at_most is not None:
            return at_most
        self.notes.append(
            Unbounded(path, "each over an input known only at run time; state each(..., at_most=n)")
        )
        return math.inf


__all__ = ["Estimate", "Unbounded", "estimate"]
