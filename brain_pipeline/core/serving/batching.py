"""Micro-batching: requests that arrive together share one forward pass.

Each request submits its images and awaits their answers. A single worker task takes the
first waiting request, keeps collecting others for at most ``max_wait_s`` or until
``max_batch`` images, runs the batch once on a dedicated thread (the model is never called
from two threads at once) and hands each request its own slice of the answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    largest_batch: int = 0
    busy_seconds: float = 0.0

    def add(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.images += size
        self.largest_batch = max(self.largest_batch, size)
        self.busy_seconds += seconds


@dataclass
class _Request:
    items: list
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Runs ``run_batch(items) -> answers`` (same length, same order) on batches of requests."""

    def __init__(
        self,
        run_batch: Callable[[list], list],
        executor: ThreadPoolExecutor,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_s not negative")
        self._run_batch, self._executor = run_batch, executor
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, items: list) -> list[Any]:
        if self._worker is None or self._worker.done() or self._closing:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(list(items), future))
        return await future

    async def close(self) -> None:
        """Answer everything already queued, then stop (a model swap drops no request)."""
        self._closing = True
        if self._worker is not None:
            await self._queue.put(None)
            await self._worker

    async def _work(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch, closing = await self._collect(first)
            await self._run(batch)
            if closing:
                return

    async def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, size = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:  # what is already waiting joins at once, even past the deadline
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            size += len(nxt.items)
        return batch, False

    async def _run(self, batch: list[_Request]) -> None:
        items = [item for request in batch for item in request.items]
        started = time.perf_counter()
        try:
            answers = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, items
            )
        except Exception as exc:  # every waiting request learns of it; the worker goes on
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        self.stats.add(len(items), time.perf_counter() - started)
        start = 0
        for request in batch:
            if not request.future.done():
                request.future.set_result(answers[start : start + len(request.items)])
            start += len(request.items)
