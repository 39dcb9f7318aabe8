"""A fresh volume is built once; every later start is warm (docs/architecture.md)."""

from __future__ import annotations

import json
import os
import re
import socket

from tests.provisioning.deployment import Site


def test_cold_start_builds_once_marks_ready_and_execs_the_handler_from_the_prefix(site: Site):
    result = site.run("--rp_serve_api", "--rp_api_port", "8000")

    assert result.returncode == 0, result.stderr
    env_id = site.env_id()
    prefix = site.envs / f"f5tts-{env_id}"
    marker = json.loads((prefix / ".f5tts" / "ready.json").read_text())
    assert marker["env_id"] == env_id
    assert site.realizations() == 1
    assert site.active() == f"f5tts-{env_id}"

    probe = result.probe
    assert probe["argv"] == ["--rp_serve_api", "--rp_api_port", "8000"]
    assert probe["executable"] == str(prefix / "bin" / "python")
    assert probe["marker_present"]
    assert probe["env"]["F5TTS_ENV_ID"] == env_id
    assert probe["env"]["F5TTS_ENV_PREFIX"] == str(prefix)
    assert probe["env"]["HF_HUB_OFFLINE"] == "1"
    assert probe["env"]["PYTHONUNBUFFERED"] == "1"
    assert probe["env"]["HF_HOME"] == str(site.volume / "cache" / "huggingface")
    assert probe["env"]["TORCH_HOME"] == str(site.volume / "cache" / "torch")
    assert probe["env"]["PIP_CACHE_DIR"] == str(site.volume / "cache" / "pip")
    assert probe["env"]["NLTK_DATA"] == str(site.volume / "cache" / "nltk")
    # The saved activation ran: the env's bin/ leads PATH.
    assert probe["env"]["PATH"].split(os.pathsep)[0] == str(prefix.resolve() / "bin")

    # exec kept the entrypoint's pid, which names the in-use record.
    record = site.envs / ".in-use" / env_id / f"{socket.gethostname()}-{result_pid(probe)}"
    assert probe["env"]["F5TTS_IN_USE_RECORD"] == str(record)
    assert json.loads(record.read_text()) == {
        "env_id": env_id,
        "host": socket.gethostname(),
        "pid": probe["pid"],
    }

    summary = result.stderr.splitlines()[-1]
    match = re.fullmatch(
        rf"\[bootstrap\] ready: cold env={env_id} waited=\d+\.\d\ds for=- "
        r"downloaded=(\d+)MB linked=(\d+) total=\d+\.\d\ds",
        summary,
    )
    assert match, summary
    prefix = site.envs / f"f5tts-{env_id}"
    assert int(match[2]) == len(list((prefix / "conda-meta").glob("*.json"))) > 0
    for phase in ("check_volume", "realize_env", "save_activation", "finish_env", "publish_env"):
        assert re.search(rf"^\[bootstrap\] {phase} \d+\.\d\ds$", result.stderr, re.M), phase


def result_pid(probe: dict) -> int:
    return probe["pid"]


def test_warm_start_takes_no_lease_and_never_calls_micromamba(site: Site):
    assert site.run().returncode == 0
    calls_after_cold = site.double_log.read_text()
    # A lease held by a live worker elsewhere: a warm start must not even look at it.
    held = site.envs / ".leases" / "env"
    held.mkdir(parents=True)
    (held / "owner").write_text("host=elsewhere\npid=7\ntoken=t0\n")
    (held / "heartbeat").write_text("t0 1\n")

    result = site.run(
        "--rp_serve_api", MICROMAMBA="/nonexistent/micromamba", F5TTS_LEASE_WAIT_MAX_S="0"
    )

    assert result.returncode == 0, result.stderr
    assert result.probe["argv"] == ["--rp_serve_api"]
    assert site.double_log.read_text() == calls_after_cold
    assert (held / "owner").read_text() == "host=elsewhere\npid=7\ntoken=t0\n"
    assert "lease" not in result.stderr
    assert re.search(
        r"ready: warm env=\w+ waited=0\.00s for=- downloaded=0MB linked=0 ", result.stderr
    )


def test_warm_start_uses_the_env_id_written_at_image_build(site: Site):
    assert site.run().returncode == 0
    env_id = site.env_id()
    # The image has bootstrap/env-id; with it the lockfile is not even read.
    (site.app / "bootstrap" / "env-id").write_text(env_id + "\n")
    (site.app / "conda-lock.yml").unlink()

    result = site.run()

    assert result.returncode == 0, result.stderr
    assert result.probe["env"]["F5TTS_ENV_ID"] == env_id


def test_models_are_fetched_only_when_their_marker_is_missing(site: Site):
    (site.volume / "models").mkdir()
    (site.volume / "models" / ".ready.json").write_text("{}")

    result = site.run(F5TTS_FETCH_MODELS="1")

    assert result.returncode == 0, result.stderr
    assert "fetch-models" not in result.stderr
    assert not (site.envs / ".leases" / "models").exists()


def test_long_realization_reports_progress_while_micromamba_works(site: Site):
    result = site.run(F5TTS_PROGRESS_S="1", MICROMAMBA_DOUBLE_PAUSE="link:2.5")

    assert result.returncode == 0, result.stderr
    progress = re.findall(
        r"^\[bootstrap\] realize_env: (\d+) s so far, pkgs \d+ MB$", result.stderr, re.M
    )
    assert len(progress) >= 2, result.stderr
    assert progress == sorted(progress, key=int)
