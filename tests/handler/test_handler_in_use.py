"""A running worker keeps its env's in-use record fresh, so gc never collects that env."""

from __future__ import annotations

import os
import time

from handler.in_use import refresh_in_use_record, start_in_use_heartbeat


def test_heartbeat_keeps_the_record_younger_than_the_ttl(tmp_path):
    record = tmp_path / "envs/.in-use/abc/host-1"
    stop = start_in_use_heartbeat(record, ttl_s=0.3)
    try:
        time.sleep(0.05)
        assert record.exists()
        os.utime(record, (0, 0))  # as if the last refresh were long ago
        time.sleep(0.3)
        assert time.time() - record.stat().st_mtime < 0.3
    finally:
        stop.set()


def test_a_removed_record_is_recreated(tmp_path):
    record = tmp_path / "in-use/host-2"
    refresh_in_use_record(record)
    record.unlink()
    refresh_in_use_record(record)
    assert record.exists()


def test_an_unwritable_volume_does_not_stop_the_worker(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    refresh_in_use_record(blocker / "cannot/exist")  # logs a warning, raises nothing


def test_no_record_when_not_started_by_the_bootstrap():
    assert start_in_use_heartbeat(None, ttl_s=900) is None
