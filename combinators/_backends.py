"""Named implementations of an interface, filled by the code that provides them.

``Journal.sqlite(...)``, ``Cache.postgres(...)`` and ``Budget.postgres(...)``
are factories on the interfaces (which sit low in the package), while the
backends implement those interfaces (and so sit above them).  A factory
looks its backend up here by name; the package registers its own backends
in ``_plugins`` (PostgreSQL ones are imported only when one is made: psycopg
is optional and slow to import), and a third party may register more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


class Backends(Generic[_T]):
    """The backends of one interface (``"Journal"``), each made by a factory registered by name."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self._makers: dict[str, Callable[..., _T]] = {}

    def register(self, name: str, make: Callable[..., _T]) -> None:
        """Make ``make(*args, **kwargs)`` the backend ``name`` (replacing one registered before)."""
        self._makers[name] = make

    def make(self, backend: str, /, *args: Any, **kwargs: Any) -> _T:
        """A new ``backend`` of this interface, from the arguments its factory takes."""
        make = self._makers.get(backend)
        if make is None:
            msg = f"{self.interface}.{backend}(): no such backend is registered (import combinators first)"
            raise LookupError(msg)
        return make(*args, **kwargs)
