"""The model thread: the chunks of every job in flight, run in shared batches.

Jobs run on threads of their own (fetching, decoding, encoding, uploading, aligning
all happen there); the model runs on one thread, owned by `Batcher`. A job hands over
all its chunks at once (`submit`, which returns one future per chunk) and waits for
the futures in order. The model thread asks the scheduler for the next batch among
everything pending, from every job (`scheduler.next_batch`: the oldest chunk first,
compatible ones join it within the memory budget, a job's first chunk with no other
chunk of its job), runs it (`engine.run_batch`, one model pass), resolves each
chunk's future and asks again. So jobs in flight share model passes while their
other work overlaps the passes of others.

A chunk's audio does not depend on its batch-mates beyond float rounding (its noise
has its own seed, padding is masked: handler/engine/noise.py, sampling.py), so a job
sounds the same alone or beside others, within the tolerance docs/api.md states.

Failures stay with their job: when a batch of several chunks fails, its chunks run
again one by one, so only the chunk that fails gets the exception (and only its job
fails); a fatal device error fails the whole batch at once, since nothing more can
run on that GPU. Cancelling a job (`cancel`) drops its pending chunks and cancels
their futures; a chunk already in a pass finishes and its result is dropped.

The thread starts with the first submit and ends when nothing is pending, so an
idle worker (or a test's runner) holds no thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from typing import Protocol

import numpy as np

from handler.engine.scheduler import BatchBudget, ChunkWork, next_batch
from handler.errors import is_fatal_device_error

log = logging.getLogger(__name__)


class BatchEngine(Protocol):
    budget: BatchBudget

    def run_batch(self, works: Sequence[ChunkWork]) -> list[np.ndarray]: ...


class Batcher:
    def __init__(self, engine: BatchEngine, budget: BatchBudget | None = None) -> None:
        self.engine = engine
        self.budget = budget or engine.budget
        self._cond = threading.Condition()
        self._pending: list[tuple[ChunkWork, Future[np.ndarray]]] = []
        self._thread: threading.Thread | None = None
        # The latest passes' sizes, for tests and benchmarks (bounded: a worker runs long).
        self.batch_sizes: deque[int] = deque(maxlen=10_000)

    def submit(self, works: Sequence[ChunkWork]) -> list[Future[np.ndarray]]:
        """Queue a job's chunks (all at once, in order); one future per chunk."""
        futures: list[Future[np.ndarray]] = [Future() for _ in works]
        with self._cond:
            self._pending.extend(zip(works, futures, strict=True))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="f5tts-model", daemon=True)
                self._thread.start()
            self._cond.notify()
        return futures

    def cancel(self, job: Hashable) -> int:
        """Drop `job`'s pending chunks and cancel their futures; returns how many."""
        with self._cond:
            dropped = [(w, f) for w, f in self._pending if w.job == job]
            self._pending = [(w, f) for w, f in self._pending if w.job != job]
        for _, future in dropped:
            future.cancel()
        return len(dropped)

    def pending_jobs(self) -> set[Hashable]:
        with self._cond:
            return {w.job for w, _ in self._pending}

    # -- the model thread --------------------------------------------------------
    def _serve(self) -> None:
        while True:
            with self._cond:
                batch = self._take_batch()
                if not batch:
                    self._thread = None  # the next submit starts a new thread
                    return
            self._run(batch)

    def _take_batch(self) -> list[tuple[ChunkWork, Future[np.ndarray]]]:
        """The next batch, removed from pending (caller holds the lock)."""
        self._pending = [(w, f) for w, f in self._pending if not f.cancelled()]
        chosen = next_batch([w for w, _ in self._pending], self.budget)
        taken = {id(w) for w in chosen}
        batch = [(w, f) for w, f in self._pending if id(w) in taken]
        self._pending = [(w, f) for w, f in self._pending if id(w) not in taken]
        return [(w, f) for w, f in batch if f.set_running_or_notify_cancel()]

    def _run(self, batch: list[tuple[ChunkWork, Future[np.ndarray]]]) -> None:
        works = [w for w, _ in batch]
        self.batch_sizes.append(len(works))
        try:
            waves = self.engine.run_batch(works)
        except Exception as exc:
            self._isolate(batch, exc)
            return
        except BaseException as exc:  # interpreter exit: no job may wait forever
            for _, future in batch:
                future.set_exception(exc)
            raise
        for (_, future), wave in zip(batch, waves, strict=True):
            future.set_result(wave)

    def _isolate(self, batch: list[tuple[ChunkWork, Future[np.ndarray]]], exc: Exception) -> None:
        """Run a failed batch's chunks one by one so only the failing chunk's job fails."""
        if len(batch) == 1 or is_fatal_device_error(exc):
            for _, future in batch:
                future.set_exception(exc)
            return
        log.warning(
            "a batch of %d chunks failed (%s: %s); running them one by one",
            len(batch),
            type(exc).__name__,
            str(exc)[:200],
        )
        fatal: BaseException | None = None
        for work, future in batch:
            if fatal is not None:
                future.set_exception(fatal)
                continue
            self.batch_sizes.append(1)
            try:
                future.set_result(self.engine.run_batch([work])[0])
            except Exception as alone:
                future.set_exception(alone)
                fatal = alone if is_fatal_device_error(alone) else None
