"""Shared test configuration.

pytest-trio's ``trio_mode`` inspects ``item.obj`` of every collected item;
pytest-mypy-plugins' YAML items have none, so give them an inert one.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not hasattr(item, "obj"):
            item.obj = None  # type: ignore[attr-defined]
