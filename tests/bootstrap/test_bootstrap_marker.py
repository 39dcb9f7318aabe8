"""Markers are typed, written atomically, and anything doubtful reads as not ready."""

from __future__ import annotations

import json
import os

import pytest

from bootstrap.marker import (
    EnvMarker,
    ModelsMarker,
    env_marker_path,
    read_env_marker,
    read_models_marker,
    write_atomic,
    write_marker,
)


def a_marker(env_id: str = "0123456789ab") -> EnvMarker:
    return EnvMarker(
        env_id=env_id,
        lock_sha256="ab" * 32,
        versions={"python": "3.11.7", "torch": "2.8.0"},
        features={"whisperx": True},
        timings={"leftovers": 12.5},
        size_bytes=9_000_000_000,
    )


def test_env_marker_survives_a_round_trip(tmp_path):
    marker = a_marker()
    write_marker(env_marker_path(tmp_path), marker)
    assert read_env_marker(tmp_path) == marker
    assert read_env_marker(tmp_path, "0123456789ab") == marker
    stored = json.loads(env_marker_path(tmp_path).read_text())
    assert stored["schema_version"] == 1 and stored["host"] and stored["created_at"].endswith("Z")


def test_models_marker_survives_a_round_trip(tmp_path):
    marker = ModelsMarker(
        files={"models/f5tts/a": 3}, sources={"models/f5tts/a": "hf://r/a"}, features={"asr": True}
    )
    write_marker(tmp_path / ".ready.json", marker)
    assert read_models_marker(tmp_path) == marker


def test_a_marker_of_another_env_id_is_not_ready(tmp_path):
    write_marker(env_marker_path(tmp_path), a_marker("aaaaaaaaaaaa"))
    assert read_env_marker(tmp_path, "bbbbbbbbbbbb") is None


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        "[]",
        '{"schema_version": 1}',
        "\xff\xfe",
    ],
)
def test_a_corrupt_marker_reads_as_not_ready(tmp_path, content):
    path = env_marker_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="latin-1")
    assert read_env_marker(tmp_path) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("schema_version", 2), ("size_bytes", "big"), ("size_bytes", True), ("features", [])],
)
def test_a_marker_with_a_wrong_field_reads_as_not_ready(tmp_path, field, value):
    write_marker(env_marker_path(tmp_path), a_marker())
    data = json.loads(env_marker_path(tmp_path).read_text())
    data[field] = value
    env_marker_path(tmp_path).write_text(json.dumps(data))
    assert read_env_marker(tmp_path) is None


def test_a_missing_marker_is_not_ready(tmp_path):
    assert read_env_marker(tmp_path) is None
    assert read_models_marker(tmp_path) is None


def test_an_interrupted_write_leaves_the_old_marker_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ready.json"
    write_atomic(path, "old\n")

    def power_cut(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]
