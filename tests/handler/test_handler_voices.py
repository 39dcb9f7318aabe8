"""The voice library on a volume that several workers share at once.

Each worker runs the handler as PID 1 of its own container, and any of them may save or
delete the same voice id at the same moment; none of that may end in an internal error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.voices import VoiceMeta, VolumeVoices


def meta(text: str) -> VoiceMeta:
    return VoiceMeta(
        voice_id="anna",
        ref_text=text,
        duration_s=2.0,
        sample_rate=24000,
        sha256=text,
        bytes=4,
        created_at="2026-01-01T00:00:00+00:00",
    )


def another_worker_first(monkeypatch, when, act) -> None:
    """Runs `act` (the other worker) once, just before the first rename `when` matches."""
    real_rename = Path.rename
    done = []

    def rename(self, target):
        if not done and when(self, Path(target)):
            done.append(True)
            act()
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)


@pytest.mark.parametrize("existed", [False, True])
def test_two_workers_saving_one_voice_at_once_both_succeed_and_the_last_one_stays(
    tmp_path, monkeypatch, existed
):
    voices = VolumeVoices(tmp_path)
    if existed:
        voices.save(meta("Before."), b"wav0")
    another_worker_first(
        monkeypatch,
        lambda source, target: target == tmp_path / "anna" and source.name.startswith(".anna."),
        lambda: VolumeVoices(tmp_path).save(meta("Theirs."), b"wav1"),
    )
    voices.save(meta("Ours."), b"wav2")
    assert voices.meta("anna") == meta("Ours.")
    assert (tmp_path / "anna/ref.wav").read_bytes() == b"wav2"
    assert [p.name for p in tmp_path.iterdir()] == ["anna"], "nothing half-done left over"


def test_a_voice_two_workers_delete_at_once_is_deleted_by_one_and_missing_for_the_other(
    tmp_path, monkeypatch
):
    voices = VolumeVoices(tmp_path)
    voices.save(meta("Ours."), b"wav")
    other = []
    another_worker_first(
        monkeypatch,
        lambda source, target: source == tmp_path / "anna",
        lambda: other.append(VolumeVoices(tmp_path).delete("anna")),
    )
    assert voices.delete("anna") is False and other == [True]
    assert list(tmp_path.iterdir()) == []
