"""A loop's sample is interrupted on the loop's own task (``runner.LoopRun._sample``): the
interruption is taken back whatever state the task was in, and a cancellation from outside the
loop is never swallowed with it."""

from __future__ import annotations

import asyncio

import pytest

from responses_app.loop.runner import _absorb_interruption


def test_an_interruption_requested_by_the_task_itself_is_taken_back() -> None:
    """Requested while the task runs (not waiting), the cancel would be thrown at its next wait."""

    async def loop_task() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # (as a cancel signal set from this task would)
        await _absorb_interruption(task)
        await asyncio.sleep(0.01)  # a later wait is not interrupted
        return f"went on, cancelling={task.cancelling()}"

    assert asyncio.run(loop_task()) == "went on, cancelling=0"


def test_an_interruption_already_delivered_is_taken_back() -> None:
    async def loop_task() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # (an adapter that turned it into an error of its own)
        await _absorb_interruption(task)
        await asyncio.sleep(0.01)
        return task.cancelling()

    assert asyncio.run(loop_task()) == 0


def test_a_cancellation_from_outside_is_not_swallowed() -> None:
    async def scenario() -> None:
        async def loop_task() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # its own interruption
            outer.cancel()  # and the host's, before the interruption is taken back
            await _absorb_interruption(task)

        outer = asyncio.ensure_future(loop_task())
        with pytest.raises(asyncio.CancelledError):
            await outer

    asyncio.run(scenario())
