"""Typed handles on the nodes of a workflow (``Workflow.add`` gives them).

A handle is plain data below everything that reads a workflow's outcome
(``WorkflowResult``, ``WorkflowFailed``): ``Node[T]`` carries the type of
the node's output, so ``result[handle]`` is typed.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, final

_T_co = TypeVar("_T_co", covariant=True)


@final
class Node(Generic[_T_co]):
    """A typed handle on one node of a workflow: its output has type ``T``.

    Handles are returned by :meth:`Workflow.add`; pass them as ``after=`` to
    later additions and use them to read a result (``result[handle]``).

    >>> from combinators import Workflow, pure, run_sync
    >>> wf, length = Workflow.start(str).add("length", pure(len))
    >>> length
    Node('length')
    >>> run_sync(wf.build(), "four").unwrap()[length]
    4
"""

    __slots__ = ("_link",)

    def __init__(self, link: Any) -> None:  # the builder's ``_Link``, which only it reads
        self._link = link

    @property
    def name(self) -> str:
        """The node's name in its workflow."""
        name: str = self._link.name
        return name

    def __repr__(self) -> str:
        return f"Node({self._link.name!r})"


def _key_name(key: Node[Any] | str, where: str) -> str:
    if isinstance(key, Node):
        return key.name
    if isinstance(key, str):
        return key
    msg = f"{where}: expected a Node handle or a node name, got {type(key).__name__} {key!r}"
    raise TypeError(msg)
