"""The one rule every fail-fast nursery follows for unexpected exceptions.

A child task that meets an ``Exception`` (a bug in an agent) keeps the
first one and cancels its siblings; the parent re-raises it as itself once
the nursery has closed, so users see their exception, not an
``ExceptionGroup`` of it.  ``BaseException``\\ s such as ``trio.Cancelled``
are never caught here.
"""

from __future__ import annotations

import trio


def keep_first_crash(crash: list[BaseException], scope: trio.CancelScope, exc: BaseException) -> None:
    """Remember ``exc`` if it is the first crash, and cancel the siblings."""
    if not crash:
        crash.append(exc)
    scope.cancel()
