"""Agents for the spend command-line tests (tests/test_spend.py)."""

from __future__ import annotations

from combinators import Usage, each, pure


def _summarise(doc: str) -> str:
    return doc[:3]


summarise = pure(_summarise).named("summarise").costs(Usage(calls=1, cost=0.5))
batch = each(summarise).named("batch")
