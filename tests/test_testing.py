"""combinators.testing: the public helpers behave as documented."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hypothesis import given, settings

from combinators import Agent, EventKind, Recorder, run
from combinators.testing import TaskCounter, agent_trees, fake, run_virtual


def test_fake_sleeps_in_trio_time_and_answers() -> None:
    assert run_virtual(fake("f", delay=3, value=7), None) == (run_virtual(fake("g", delay=3, value=7), None))
    result, elapsed = run_virtual(fake("f", delay=3, error="no"), None)
    assert elapsed == 3
    assert result.failure() == "no"


@settings(max_examples=60, deadline=None)
@given(agent_trees())
def test_every_generated_tree_ends_leaks_nothing_and_reports_every_start(tree: Agent[Any, Any, Any]) -> None:
    counter = TaskCounter()
    recorder = Recorder()

    async def main() -> None:
        trio.lowlevel.add_instrument(counter)
        await run(tree, 0, observer=recorder)
        trio.lowlevel.remove_instrument(counter)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert counter.alive == 0  # no task outlives run()
    starts = sum(1 for e in recorder.events if e.kind is EventKind.STARTED)
    ends = sum(1 for e in recorder.events if e.kind not in (EventKind.STARTED, EventKind.RETRIED))
    assert starts == ends > 0
