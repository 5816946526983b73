"""What a cache store is (``agent.cache(store)``): the interface the stores implement.

The tree holds a :class:`CachePolicy` on a cached leaf; the interpreter
asks the layer registered for it (``_cache.cache_layer``) to answer the
leaf from its store.  The stores — memory and SQLite in ``_cache``,
PostgreSQL in ``_cache_postgres`` — implement :class:`Cache` and are made
by its factories through :data:`BACKENDS` (registered in ``_plugins``).
See ``_cache`` for keys, single flight and time to live.
"""

from __future__ import annotations

import abc
import hashlib
import time
from collections.abc import Callable
from typing import Any, Final

import attrs
import cattrs

from ._backends import Backends


Clock = Callable[[], float]


@attrs.frozen
class Entry:
    """A stored outcome: ``payload`` is the JSON of the value (or tagged error)."""

    ok: bool
    payload: str
    expires: float | None


def cache_key(name: str, version: str | None, digest: str) -> str:
    """The key of a leaf's outcome on an input: the journal's, without the run id."""
    return hashlib.sha256(f"{name}\0{version or ''}\0{digest}".encode()).hexdigest()


class Cache(abc.ABC):
    """Where cached leaf outcomes live: ``Cache.memory()``, ``Cache.sqlite(path)``, ``Cache.postgres(dsn)``.

    One store serves any number of leaves, trees, runs and (SQLite,
    PostgreSQL) processes.  ``converter`` (cattrs) encodes values, as for
    the journal; ``clock`` gives wall-clock seconds for time to live.

    >>> from combinators import pure, run_sync
    >>> calls = []
    >>> def shout(s: str) -> str:
    ...     calls.append(s)
    ...     return s.upper()
    >>> cached = pure(shout).cache(Cache.memory())
    >>> run_sync(cached, "hi"), run_sync(cached, "hi"), calls
    (<Success: HI>, <Success: HI>, ['hi'])
    """

    #: None: the package's shared ``combinators.converter`` (the stores
    #: made by the factories below are given it).
    converter: cattrs.Converter | None
    clock: Clock

    def __init__(self, *, converter: cattrs.Converter | None = None, clock: Clock | None = None) -> None:
        self.converter = converter
        self.clock = clock if clock is not None else time.time
        #: Calls in flight, by (trio run, key): the single-flight table (``_cache``).
        self.flights: dict[tuple[object, str], Any] = {}

    @staticmethod
    def memory(*, converter: cattrs.Converter | None = None, clock: Clock | None = None) -> Cache:
        """A store in this process's memory (survives runs, not the process)."""
        return BACKENDS.make("memory", converter=converter, clock=clock)

    @staticmethod
    def sqlite(path: str, *, converter: cattrs.Converter | None = None, clock: Clock | None = None) -> Cache:
        """A store in the SQLite file ``path`` (the embedded default; processes share it)."""
        return BACKENDS.make("sqlite", path, converter=converter, clock=clock)

    @staticmethod
    def postgres(dsn: str, *, converter: cattrs.Converter | None = None, clock: Clock | None = None) -> Cache:
        """A store in PostgreSQL (psycopg 3, extra ``postgres``), shared by processes and machines."""
        return BACKENDS.make("postgres", dsn, converter=converter, clock=clock)

    @abc.abstractmethod
    async def get(self, key: str) -> Entry | None:
        """The live entry stored under ``key``, if any (expired entries are misses)."""

    @abc.abstractmethod
    async def put(self, key: str, name: str, version: str | None, entry: Entry) -> None:
        """Store ``entry`` under ``key`` (replacing an older one)."""

    def close(self) -> None:
        """Release what the store holds open (connections); a store in memory holds nothing."""

    def _live(self, entry: Entry | None) -> Entry | None:
        if entry is None or (entry.expires is not None and entry.expires <= self.clock()):
            return None
        return entry


@attrs.frozen(eq=False)
class CachePolicy:
    """How a leaf is cached: where, for how long, and whether permanent failures too."""

    store: Cache
    ttl: float | None
    failures: bool


#: The store backends (``Cache.memory``, ``Cache.sqlite``, ``Cache.postgres``), registered in ``_plugins``.
BACKENDS: Final[Backends[Cache]] = Backends("Cache")
