"""RunPod wiring: load the models once, warm them up, hand each job to JobRunner.

Why start-up failures do not crash: a worker that exits at start is restarted by
RunPod again and again, costing money and showing the caller nothing. When the
failure is one a restart cannot fix (weights missing, bad settings, a package that
does not import), the worker stays up and answers every job with that sentence.
Failures a restart may fix (e.g. a GPU that did not initialise) still raise.

What RunPod calls (`Worker.runpod_config`): whether a worker streams is decided by
the kind of its handler function, not per job (runpod-python: a generator handler's
every job is streamed, its output the list of what it yielded). So a worker setting
chooses (F5TTS_STREAMING):

* 0 (default): `serve`, an async function: every output exactly as the job layer
  returns it; `stream: true` is refused with a sentence naming the setting.
* 1: `serve_stream`, an async generator with `return_aggregate_stream`: a streamed
  job yields its pieces, any other job yields its usual output once (so /runsync on
  such a worker returns `[output]`, the convention of streaming workers).

Both run the job on a thread of the worker's pool (F5TTS_MAX_CONCURRENCY threads,
the SDK's `concurrency_modifier` lets that many jobs in at once), so the SDK's event
loop stays free and jobs overlap; RunPod stopping a job cancels its task, which
cancels the job (JobControl) and leaves the others running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from handler import audio
from handler.contracts import PreparedReference, SynthesisParams
from handler.errors import UserError, error_result, is_fatal_device_error, sentence
from handler.in_use import start_in_use_heartbeat
from handler.jobs import JobCancelled, JobControl, JobRunner, Models
from handler.settings import Settings
from handler.storage import ObjectStore
from handler.streaming import Emit
from handler.worker_logging import configure_logging

log = logging.getLogger("handler")

ModelFactory = Callable[[Settings], Models]
WARMUP_TEXT = "Warm up."


def load_models(settings: Settings) -> Models:
    """The real models (handler.engine/alignment/asr, imported only here)."""
    from handler import engine

    notes: list[str] = []
    speech = engine.load_engine(settings)
    aligner = transcriber = load_aligner = None
    try:
        from handler import alignment

        aligner = alignment.load_aligner(settings)
        load_aligner = alignment.language_loader(settings)
    except Exception as exc:  # optional: tts works without word timings
        log.warning("aligner not loaded: %s", exc)
        notes.append(f"word timings unavailable: {str(exc)[:200]}")
    try:
        from handler import asr

        transcriber = asr.load_transcriber(settings)
    except Exception as exc:  # optional: callers can send ref_text
        log.warning("transcriber not loaded: %s", exc)
        notes.append(f"reference transcription unavailable: {str(exc)[:200]}")
    if aligner is None and not any(n.startswith("word timings") for n in notes):
        notes.append("word timings unavailable: no alignment model loaded (see the worker log)")
    if transcriber is None and not any(n.startswith("reference transcription") for n in notes):
        notes.append("reference transcription unavailable: jobs must send ref_text")
    return Models(speech, aligner, transcriber, notes, load_aligner)


def warm_up(models: Models) -> None:
    """One short synthesis, and its alignment when an aligner is loaded, so the first
    job does not pay for kernel set-up (the aligner's first call is as slow)."""
    rate = models.engine.sample_rate
    t = np.arange(int(1.5 * rate)) / rate
    tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="f5tts-warmup-") as tmp:
        path = Path(tmp) / "ref.wav"
        audio.write_wav(path, tone, rate)
        reference = PreparedReference(path, "A short tone.", 1.5)
        wave = models.engine.synthesize(reference, WARMUP_TEXT, SynthesisParams(nfe_step=8, seed=0))
    if models.aligner is not None:
        try:
            models.aligner.align(np.asarray(wave, dtype=np.float32), rate, WARMUP_TEXT)
        except Exception:  # timed jobs will report it; plain tts still works
            log.exception("aligner warm-up failed")


def _permanent(exc: BaseException) -> bool:
    """Failures that a restart of the same image on the same volume cannot fix."""
    if is_fatal_device_error(exc):
        return False
    return isinstance(exc, UserError | ImportError | FileNotFoundError | ValueError)


class Worker:
    def __init__(self, runner: JobRunner | None, startup_error: str | None = None) -> None:
        self.runner = runner
        self.startup_error = startup_error
        settings = runner.settings if runner is not None else None
        self.streaming = bool(settings and settings.streaming)
        self.max_concurrency = settings.max_concurrency if settings is not None else 1
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="f5tts-job")
        self._config: dict[str, Any] = {}

    def handle(
        self,
        job: dict[str, Any],
        *,
        control: JobControl | None = None,
        emit: Emit | None = None,
    ) -> dict[str, Any]:
        """One job, on the calling thread: its output, or RunPod's error shape."""
        if self.startup_error or self.runner is None:
            return {"error": self.startup_error or "The worker did not start; see its log."}
        job_id = str(job.get("id") or "local")
        try:
            return self.runner.run(
                job_id, job.get("input"), _progress_reporter(job), control=control, emit=emit
            )
        except JobCancelled:
            log.info("job %s stopped", job_id)
            return {"error": "The job was stopped before it finished."}
        except Exception as exc:
            result = error_result(exc)
            if isinstance(exc, UserError):
                log.info("job %s refused: %s", job_id, result["error"])
            else:
                log.exception("job %s failed", job_id)
            return result

    # -- what RunPod calls -------------------------------------------------------
    def runpod_config(self) -> dict[str, Any]:
        """The argument of runpod.serverless.start."""
        self._config = {
            "handler": self.serve_stream if self.streaming else self.serve,
            "concurrency_modifier": lambda current: self.max_concurrency,
        }
        if self.streaming:
            self._config["return_aggregate_stream"] = True
        return self._config

    async def serve(self, job: dict[str, Any]) -> dict[str, Any]:
        """The handler of a worker that does not stream."""
        control = JobControl()
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._pool, partial(self.handle, job, control=control))
        try:
            return await running
        except asyncio.CancelledError:
            control.cancel()
            raise

    async def serve_stream(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The handler of a streaming worker: a streamed job's pieces as they come, any
        job's output (or error) last."""
        control = JobControl()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bool, dict[str, Any]]] = asyncio.Queue()

        def put(last: bool, item: dict[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (last, item))
            except RuntimeError:  # the loop is gone: the job was stopped
                control.cancel()

        def work() -> None:
            put(True, self.handle(job, control=control, emit=partial(put, False)))

        running = loop.run_in_executor(self._pool, work)
        try:
            while True:
                last, item = await queue.get()
                if last and item.pop("refresh_worker", False):
                    # A generator's yield cannot ask for a new worker the way a returned
                    # dict does; the SDK reads this flag of its config after the job.
                    self._config["refresh_worker"] = True
                yield item
                if last:
                    return
        finally:
            if not running.done():
                control.cancel()


def _progress_reporter(job: dict[str, Any]) -> Callable[[int, int], None]:
    on_runpod = bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))

    def report(done: int, total: int) -> None:
        log.info("job %s: chunk %d/%d", job.get("id"), done, total)
        if on_runpod:  # locally the SDK would post to a placeholder URL
            import runpod

            runpod.serverless.progress_update(job, {"chunks_done": done, "chunks_total": total})

    return report


def build_worker(factory: ModelFactory = load_models, environ: Any = None) -> Worker:
    try:
        settings = Settings.from_env(environ)
        models = factory(settings)
        if settings.warmup:
            warm_up(models)
        store = ObjectStore(settings) if settings.s3_bucket else None
        return Worker(JobRunner(settings, models, store))
    except Exception as exc:
        if not _permanent(exc):
            raise
        log.exception("worker start-up failed; every job will get this error")
        text = exc.sentence if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        return Worker(None, sentence(f"The worker could not start: {text}"))


def keep_env_in_use(worker: Worker) -> None:
    """Refresh the bootstrap's in-use record so gc never deletes the env under us. A
    worker whose settings are invalid cannot run jobs, so its env is not kept."""
    if worker.runner is not None:
        settings = worker.runner.settings
        start_in_use_heartbeat(settings.in_use_record, settings.in_use_ttl_s)


def main(factory: ModelFactory = load_models) -> None:
    from handler.shutdown import exit_on_sigterm, run_interruptibly

    exit_on_sigterm()  # again, for entry points other than `python -m handler`
    configure_logging()
    # Loading takes seconds to minutes: a SIGTERM meanwhile must still end the worker.
    worker = run_interruptibly(build_worker, factory)
    keep_env_in_use(worker)
    import runpod

    runpod.serverless.start(worker.runpod_config())
