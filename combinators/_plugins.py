"""The package's storage backends, registered with the interfaces they implement.

``Journal.sqlite(...)``, ``Cache.memory()``, ``Budget.postgres(...)`` and
the rest look their backend up by name (``_backends``); this module fills
those tables, and ``combinators/__init__`` imports it.  A PostgreSQL
backend is imported when the first one is made: psycopg is an optional
extra and slow to import.
"""

from __future__ import annotations

from typing import Any

from . import _budget, _cache_store, _journal_store
from ._cache import MemoryCache, SqliteCache
from ._journal_sqlite import SqliteJournal


def _postgres_journal(*args: Any, **kwargs: Any) -> _journal_store.Journal:
    from ._journal_postgres import PostgresJournal

    return PostgresJournal(*args, **kwargs)


def _postgres_cache(*args: Any, **kwargs: Any) -> _cache_store.Cache:
    from ._cache_postgres import PostgresCache

    return PostgresCache(*args, **kwargs)


def _postgres_budget(*args: Any, **kwargs: Any) -> _budget.RemoteBudget:
    from ._budget_postgres import PostgresBudget

    return PostgresBudget(*args, **kwargs)


_journal_store.BACKENDS.register("sqlite", SqliteJournal)
_journal_store.BACKENDS.register("postgres", _postgres_journal)
_cache_store.BACKENDS.register("memory", MemoryCache)
_cache_store.BACKENDS.register("sqlite", SqliteCache)
_cache_store.BACKENDS.register("postgres", _postgres_cache)
_budget.BACKENDS.register("postgres", _postgres_budget)
