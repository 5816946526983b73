"""Shared test configuration.

pytest-trio's ``trio_mode`` inspects ``item.obj`` of every collected item;
pytest-mypy-plugins' YAML items have none, so give them an inert one.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

#: Not collected (``--doctest-modules`` would import it): it exits the
#: process on import, as the command-line test of such a target needs.
collect_ignore = ["cli_exits.py"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not hasattr(item, "obj"):
            item.obj = None  # type: ignore[attr-defined]


# On CI, property tests explore the same examples every run (a failure there
# is then reproducible from the log); locally they keep exploring new ones.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
