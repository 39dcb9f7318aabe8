"""Keeps this worker's in-use record fresh while it runs.

`bootstrap gc` deletes environments that no live worker uses; a worker shows it is
alive by the mtime of the record the bootstrap created for it (F5TTS_IN_USE_RECORD,
docs/architecture.md). A record older than F5TTS_IN_USE_TTL_S is taken for a worker
that died, so the handler touches it well within that time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def refresh_in_use_record(record: Path) -> None:
    """Touch the record, recreating it if something removed it (a gc that judged it stale
    while this worker was stalled, say)."""
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.touch()
    except OSError as exc:  # a full or flaky volume must not take the worker down
        log.warning("could not refresh the in-use record %s: %s", record, exc)


def start_in_use_heartbeat(record: Path | None, ttl_s: float) -> threading.Event | None:
    """Refreshes `record` every third of `ttl_s` in a daemon thread; set the returned
    event to stop. None when the worker was not started by the bootstrap."""
    if record is None:
        return None
    stop = threading.Event()
    interval = max(ttl_s / 3, 0.05)

    def beat() -> None:
        refresh_in_use_record(record)
        while not stop.wait(interval):
            refresh_in_use_record(record)

    threading.Thread(target=beat, name="in-use-heartbeat", daemon=True).start()
    return stop
