"""The worker's handler driven by runpod-python's own job loop, in process.

RunPod's local API cannot serve more than one job at a time (`--rp_api_concurrency
> 1` crashes), so concurrent jobs are tested here: the SDK's `JobScaler` (the loop a
worker runs on RunPod: `concurrency_modifier`, one task per job, `handle_job` with
its generator path, per-job stop signals that cancel a job's task) with its three
documented local-test hooks (`jobs_fetcher`, `jobs_handler` left as the SDK's
`handle_job`, `stop_signals_fetcher`), and the two network calls of `handle_job`
(`send_result`, `stream_result`) recorded instead of posted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runpod.serverless.modules import rp_job, rp_scale


@dataclass
class JobRecord:
    streamed: list[Any] = field(default_factory=list)  # every yield, as /stream shows it
    result: dict[str, Any] | None = None  # what the SDK posted as the job's end
    first_piece_at: float | None = None
    done_at: float | None = None

    @property
    def status(self) -> str:
        if self.result is None:
            return "STOPPED"
        return "FAILED" if self.result.get("error") else "COMPLETED"


def run_jobs(
    config: dict[str, Any],
    jobs: list[dict[str, Any]],
    *,
    stop: Callable[[dict[str, JobRecord]], list[str]] | None = None,
    timeout_s: float = 120.0,
) -> dict[str, JobRecord]:
    """Run `jobs` ({"id", "input"}) through the SDK's loop; their records by id.
    `stop(records)` is polled and names the jobs RunPod should stop now."""
    records = {job["id"]: JobRecord() for job in jobs}
    waiting = list(jobs)
    stopped: set[str] = set()

    async def fetch(session, wanted: int):
        await asyncio.sleep(0.01)
        taken, waiting[:] = waiting[:wanted], waiting[wanted:]
        return taken or None

    async def stop_signals(session):
        await asyncio.sleep(0.02)
        ids = [i for i in (stop(records) if stop else []) if i not in stopped]
        stopped.update(ids)
        return ids

    async def stream_result(session, job_data, job):
        record = records[job["id"]]
        record.first_piece_at = record.first_piece_at or time.perf_counter()
        record.streamed.append(job_data.get("output"))

    async def send_result(session, job_data, job, is_stream=False):
        if job_data.get("status") == "IN_PROGRESS":  # a progress update
            return
        records[job["id"]].result = job_data
        records[job["id"]].done_at = time.perf_counter()

    async def main() -> None:
        # The hooks go onto the worker's own config dict: the SDK reads that dict after
        # each job (refresh_worker, set by the handler after a fatal GPU error).
        config.update(
            jobs_fetcher=fetch,
            jobs_fetcher_timeout=5,
            stop_signals_fetcher=stop_signals,
            stop_signals_fetcher_timeout=5,
        )
        scaler = rp_scale.JobScaler(config)
        loop = asyncio.create_task(scaler.run())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if not waiting and not scaler.jobs_tasks and scaler.jobs_queue.empty():
                break
        scaler.kill_worker()
        await asyncio.wait_for(loop, 30)

    saved = rp_job.send_result, rp_job.stream_result
    rp_job.send_result, rp_job.stream_result = send_result, stream_result
    try:
        asyncio.run(main())
    finally:
        rp_job.send_result, rp_job.stream_result = saved
        for hook in ("jobs_fetcher", "jobs_fetcher_timeout", "stop_signals_fetcher"):
            config.pop(hook, None)
        config.pop("stop_signals_fetcher_timeout", None)
    return records
