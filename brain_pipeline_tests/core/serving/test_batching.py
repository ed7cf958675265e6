"""Micro-batching: requests that arrive together share one run; nothing is lost on close."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from brain_pipeline.core.serving.batching import MicroBatcher


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if self.fail_on in items:
            raise RuntimeError("model failed")
        return [item * 10 for item in items]


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_batches_and_get_their_own_answers() -> None:
    recorder = Recorder()

    async def scenario():
        with ThreadPoolExecutor(1, thread_name_prefix="model") as executor:
            batcher = MicroBatcher(recorder, executor, max_batch=8, max_wait_s=0.05)
            batcher.start()
            requests = [[i, 100 + i] for i in range(10)]
            answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
            await batcher.close()
            return requests, answers, batcher.stats

    requests, answers, stats = _run(scenario())
    assert answers == [[10 * a, 10 * b] for a, b in requests]
    assert stats.images == 20 and stats.batches == len(recorder.batches) < 10
    # A request's images stay together; a batch closes once it holds max_batch images.
    assert all(len(batch) <= 8 for batch in recorder.batches)
    assert recorder.threads == {"model_0"}


def test_a_failed_batch_fails_its_requests_only() -> None:
    recorder = Recorder(fail_on=3)

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(recorder, executor, max_batch=1, max_wait_s=0.0)
            batcher.start()
            results = await asyncio.gather(
                *(batcher.submit([i]) for i in range(5)), return_exceptions=True
            )
            await batcher.close()
            return results

    results = _run(scenario())
    assert isinstance(results[3], RuntimeError)
    assert [r for i, r in enumerate(results) if i != 3] == [[0], [10], [20], [40]]


def test_close_answers_what_is_queued_then_refuses_new_work() -> None:
    recorder = Recorder()

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(recorder, executor, max_batch=2, max_wait_s=0.01)
            batcher.start()
            pending = [asyncio.ensure_future(batcher.submit([i])) for i in range(6)]
            await asyncio.sleep(0)  # let them queue
            await batcher.close()
            with pytest.raises(RuntimeError, match="not running"):
                await batcher.submit([99])
            return await asyncio.gather(*pending)

    assert _run(scenario()) == [[0], [10], [20], [30], [40], [50]]
