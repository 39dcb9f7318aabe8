"""Scenarios proving the provisioning test kit is real: real packages, real lockfiles,
a micromamba double that really installs them and fails the way micromamba fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conda_lock.lockfile import parse_conda_lock_file

from tests.support import lockfiles
from tests.support.conda_channel import PREFIX_PROBE_FILE, BallastSpec, build_channel
from tests.support.micromamba_double import cache_folder, read_calls, realizations
from tests.support.pins import pins
from tests.support.wheels import build_wheel

# Harmless if tests/conftest.py registers the plugin too: pytest loads it once.
pytest_plugins = ("tests.support.fixtures",)


def mm(env: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["micromamba", *args], env=env, capture_output=True, text=True, check=False, **kwargs
    )


def create(env: dict[str, str], prefix: Path, lockfile: Path) -> subprocess.CompletedProcess:
    return mm(env, "create", "-y", "-p", str(prefix), "-f", str(lockfile))


def test_channel_indexes_cuda_and_cpu_builds_of_every_package(local_channel):
    repodata = json.loads((local_channel.root / "linux-64" / "repodata.json").read_text())
    records = {**repodata["packages"], **repodata["packages.conda"]}
    names = {r["name"] for r in records.values()}
    assert {"python", "pip", "pyyaml", "pytorch", "torchaudio", "cuda-version", "ffmpeg"} <= names
    torch_builds = {r["build"] for r in records.values() if r["name"] == "pytorch"}
    assert {b.split("_")[0] for b in torch_builds} == {"cuda129", "cpu"}
    assert (local_channel.root / "noarch" / "repodata.json").is_file()


def test_lockfile_is_conda_lock_v1_with_conda_locks_own_content_hash(cuda_lock):
    assert cuda_lock.lockfile.name.endswith("-lock.yml")
    lock = parse_conda_lock_file(cuda_lock.lockfile)
    by_name = {p.name: p for p in lock.package}
    assert by_name["pytorch"].build.startswith("cuda129_")
    assert by_name["torchaudio"].build.startswith("cuda129_")
    assert all(p.url.startswith(cuda_lock.channel.url + "/linux-64/") for p in lock.package)
    assert all(p.hash.sha256 and p.hash.md5 for p in lock.package)
    assert lock.metadata.channels[0].url == cuda_lock.channel.url
    assert lock.metadata.content_hash == {"linux-64": cuda_lock.content_hash}
    assert cuda_lock.content_hash == lockfiles.content_hash_for(
        cuda_lock.environment_yml, cuda_lock.virtual_packages_yml
    )


def test_content_hash_changes_with_the_virtual_packages(cuda_lock, tmp_path):
    # conda-lock hashes the virtual packages too: a lock made for another CUDA is stale.
    other = tmp_path / "virtual-packages.yml"
    other.write_text(cuda_lock.virtual_packages_yml.read_text().replace("12.9", "12.4"))
    assert other.read_text() != cuda_lock.virtual_packages_yml.read_text()
    assert lockfiles.content_hash_for(cuda_lock.environment_yml, other) != cuda_lock.content_hash


def test_broken_lockfile_variants_differ_only_where_intended(cuda_lock, local_channel, tmp_path):
    src = cuda_lock.lockfile

    def parsed(path):
        return {p.name: p for p in parse_conda_lock_file(path).package}

    wrong = parsed(lockfiles.with_wrong_sha256(src, tmp_path / "wrong-lock.yml"))
    assert wrong["pytorch"].hash.sha256 == "0" * 64
    missing = parsed(lockfiles.without_sha256(src, tmp_path / "nosha-lock.yml"))
    assert missing["pytorch"].hash.sha256 is None and missing["pytorch"].hash.md5
    foreign = parsed(lockfiles.with_foreign_url(src, tmp_path / "foreign-lock.yml"))
    assert foreign["pytorch"].url.startswith("https://example.org/chan/linux-64/pytorch-")
    cpu = parsed(lockfiles.with_cpu_pytorch(src, tmp_path / "cpu-lock.yml", local_channel))
    assert cpu["pytorch"].build.startswith("cpu_") and cpu["torchaudio"].build.startswith("cpu_")
    stale = lockfiles.with_stale_content_hash(src, tmp_path / "stale-lock.yml")
    assert parse_conda_lock_file(stale).metadata.content_hash["linux-64"] == "f" * 64
    assert parsed(stale)["pytorch"].hash == parsed(src)["pytorch"].hash


def test_double_creates_a_prefix_whose_python_imports_torch_and_yaml(
    micromamba_env, cuda_lock, tmp_path
):
    prefix = tmp_path / "envs" / "f5tts-abc"
    result = create(micromamba_env, prefix, cuda_lock.lockfile)
    assert result.returncode == 0, result.stderr

    probe = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import sys, torch, torchaudio, yaml; "
            "print(sys.prefix, torch.__version__, torch.version.cuda, torch.cuda.is_available())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == [str(prefix), "2.8.0", "12.9", "False"]
    ffmpeg = subprocess.run(
        [str(prefix / "bin" / "ffmpeg"), "-version"], capture_output=True, text=True, check=True
    )
    assert ffmpeg.stdout.startswith("ffmpeg version 7.1")
    assert len(list((prefix / "conda-meta").glob("*.json"))) == len(
        lockfiles.lock_packages(cuda_lock.lockfile)
    )
    tarballs = {p.name for p in Path(micromamba_env["CONDA_PKGS_DIRS"]).glob("*.conda")}
    assert "pytorch-2.8.0-cuda129_py311h0000000_0.conda" in tarballs


def test_prefix_placeholder_is_rewritten_to_the_real_prefix(micromamba_env, cuda_lock, tmp_path):
    prefix = tmp_path / "p"
    assert create(micromamba_env, prefix, cuda_lock.lockfile).returncode == 0
    assert (prefix / PREFIX_PROBE_FILE).read_text() == f"prefix={prefix}\n"


def test_pip_in_the_prefix_installs_a_hash_locked_wheel(
    micromamba_env, cuda_lock, wheelhouse, tmp_path
):
    prefix = tmp_path / "p"
    assert create(micromamba_env, prefix, cuda_lock.lockfile).returncode == 0
    python = str(prefix / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse.dir)]
    pip += ["--no-deps", "--require-hashes", "-r", str(wheelhouse.requirements)]
    subprocess.run(pip, check=True, capture_output=True)
    out = subprocess.run(
        [python, "-c", "import f5tts_probe, leftover_probe; print(f5tts_probe.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith(str(prefix / "lib" / "python3.11" / "site-packages"))


def test_pip_entries_of_the_lockfile_are_installed_after_the_conda_packages(
    micromamba_env, local_channel, tmp_path
):
    wheel = build_wheel(tmp_path / "wheels", "runpod-probe", "1.0.0")
    pip = lockfiles.PipLock("runpod-probe", "1.0.0", wheel.path.as_uri(), wheel.sha256)
    bundle = lockfiles.write_lock(local_channel, tmp_path / "lock", pip=[pip])
    prefix = tmp_path / "p"
    result = create(micromamba_env, prefix, bundle.lockfile)
    assert result.returncode == 0, result.stderr
    subprocess.run([str(prefix / "bin" / "python"), "-c", "import runpod_probe"], check=True)
    # The temp requirements file written next to the lockfile is gone again.
    assert sorted(p.name for p in bundle.lockfile.parent.iterdir()) == [
        "conda-lock.yml",
        "environment.yml",
        "virtual-packages.yml",
    ]


def test_create_yes_wipes_an_existing_prefix_before_reading_the_lockfile(
    micromamba_env, cuda_lock, tmp_path
):
    prefix = tmp_path / "p"
    assert create(micromamba_env, prefix, cuda_lock.lockfile).returncode == 0
    (prefix / "precious.txt").write_text("from the first build")
    broken = tmp_path / "broken-lock.yml"
    broken.write_text("version: 1\npackage: [\n")

    result = create(micromamba_env, prefix, broken)

    assert result.returncode == 1
    assert "Could not parse lockfile" in result.stderr
    assert not prefix.exists()


def test_a_corrupted_package_is_refused_naming_the_package(
    micromamba_env, private_channel, tmp_path
):
    channel = private_channel(tmp_path / "channel")
    bundle = lockfiles.write_lock(channel, tmp_path / "lock")
    archive = channel.archive("pytorch", "cuda")
    archive.write_bytes(archive.read_bytes()[:-10] + b"corrupted!")

    result = create(micromamba_env, tmp_path / "p", bundle.lockfile)

    assert result.returncode == 1
    assert "pytorch-2.8.0-cuda129" in result.stderr and "incorrect SHA256" in result.stderr
    # As with the real one, the refused prefix exists, empty but for conda-meta/history.
    assert [p.name for p in (tmp_path / "p" / "conda-meta").iterdir()] == ["history"]


def test_a_lockfile_with_a_wrong_sha256_is_refused(micromamba_env, cuda_lock, tmp_path):
    wrong = lockfiles.with_wrong_sha256(cuda_lock.lockfile, tmp_path / "wrong-lock.yml", "ffmpeg")
    result = create(micromamba_env, tmp_path / "p", wrong)
    assert result.returncode == 1
    assert "ffmpeg-7.1-gpl_h0000000_0.conda tarball has incorrect SHA256" in result.stderr
    assert "Found incorrect downloads. Aborting" in result.stderr


def test_a_file_not_named_like_a_lockfile_is_not_read_as_one(micromamba_env, cuda_lock, tmp_path):
    plain = tmp_path / "env.yml"
    plain.write_text(cuda_lock.lockfile.read_text())
    result = create(micromamba_env, tmp_path / "p", plain)
    assert result.returncode == 1
    assert "-lock.yml" in result.stderr


def test_cli_errors_use_cli11_exit_codes(micromamba_env, cuda_lock, tmp_path):
    assert mm(micromamba_env, "--version").stdout.strip() == pins()["MICROMAMBA_VERSION"]
    unknown = mm(micromamba_env, "create", "-y", "--frobnicate", "-p", str(tmp_path / "p"))
    assert unknown.returncode == 109
    assert "--frobnicate" in unknown.stderr
    assert (
        mm(micromamba_env, "shell", "activate", "-s", "sh", "-p", str(tmp_path)).returncode == 105
    )
    no_shell = mm(micromamba_env, "shell", "activate", "-p", str(tmp_path))
    assert no_shell.returncode != 0 and "Unknown shell type" in no_shell.stderr
    dash_dash = mm(micromamba_env, "run", "-p", str(tmp_path), "--", "true")
    assert dash_dash.returncode == 109


def test_missing_root_prefix_is_an_error(micromamba_env, cuda_lock, tmp_path):
    env = {k: v for k, v in micromamba_env.items() if k != "MAMBA_ROOT_PREFIX"}
    result = create(env, tmp_path / "p", cuda_lock.lockfile)
    assert result.returncode == 1
    assert "MAMBA_ROOT_PREFIX" in result.stderr


def test_activation_script_resolves_symlinks_and_sources_activate_d(
    micromamba_env, cuda_lock, tmp_path
):
    prefix = tmp_path / "envs" / "f5tts-abc"
    assert create(micromamba_env, prefix, cuda_lock.lockfile).returncode == 0
    activate_d = prefix / "etc" / "conda" / "activate.d"
    activate_d.mkdir(parents=True)
    (activate_d / "probe.sh").write_text("export PROBE_ACTIVATED=yes\n")
    link = tmp_path / "envs" / "f5tts"
    link.symlink_to(prefix.name)

    script = mm(micromamba_env, "shell", "activate", "-s", "posix", "-p", str(link))
    assert script.returncode == 0, script.stderr
    out = subprocess.run(
        [
            "/bin/sh",
            "-c",
            script.stdout + '\necho "$CONDA_PREFIX $PROBE_ACTIVATED"; command -v python',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [str(prefix), "yes", str(prefix / "bin" / "python")]


def test_run_returns_the_exit_code_of_the_command(micromamba_env, cuda_lock, tmp_path):
    prefix = tmp_path / "p"
    assert create(micromamba_env, prefix, cuda_lock.lockfile).returncode == 0
    env = {**micromamba_env, "MAMBA_USE_LOCKFILES": "false"}
    result = mm(env, "run", "-p", str(prefix), "python", "-c", "import sys; sys.exit(7)")
    assert result.returncode == 7


def test_log_records_every_call_so_tests_can_count_realizations(
    micromamba_env, cuda_lock, tmp_path
):
    create(micromamba_env, tmp_path / "a", cuda_lock.lockfile)
    create(micromamba_env, tmp_path / "b", cuda_lock.lockfile)
    mm(micromamba_env, "--version")
    log = Path(micromamba_env["MICROMAMBA_DOUBLE_LOG"])
    calls = read_calls(log)
    assert len(calls) == 3
    assert len(realizations(log)) == 2
    assert all(c["rc"] == 0 and c["end"] >= c["start"] for c in calls)
    assert calls[0]["env"]["MAMBA_ROOT_PREFIX"] == micromamba_env["MAMBA_ROOT_PREFIX"]


@pytest.mark.parametrize("phase", ["download", "link"])
def test_pause_lets_a_test_kill_the_double_mid_phase(micromamba_env, cuda_lock, tmp_path, phase):
    prefix = tmp_path / "p"
    env = {**micromamba_env, "MICROMAMBA_DOUBLE_PAUSE": f"{phase}:60"}
    proc = subprocess.Popen(
        ["micromamba", "create", "-y", "-p", str(prefix), "-f", str(cuda_lock.lockfile)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr.readline().strip() == f"PAUSED {phase}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    linked = list((prefix / "conda-meta").glob("*.json"))
    assert 0 < len(linked) < 8 if phase == "link" else not linked
    (call,) = read_calls(Path(env["MICROMAMBA_DOUBLE_LOG"]))
    assert "rc" not in call


def test_ballast_packages_have_the_requested_size(tmp_path):
    channel = build_channel(tmp_path / "channel", ballast=BallastSpec(count=2, size_bytes=1 << 20))
    archive = channel.archive("ballast-1")
    assert archive.stat().st_size > 1 << 20  # random bytes do not compress


def test_injected_link_failure_leaves_a_partial_prefix(micromamba_env, cuda_lock, tmp_path):
    env = {**micromamba_env, "MICROMAMBA_DOUBLE_FAIL": "link"}
    result = create(env, tmp_path / "p", cuda_lock.lockfile)
    assert result.returncode == 1
    assert "injected failure at phase link" in result.stderr
    assert 0 < len(list((tmp_path / "p" / "conda-meta").glob("*.json"))) < 8


def test_without_yes_an_existing_prefix_is_kept_and_create_aborts(
    micromamba_env, cuda_lock, tmp_path
):
    prefix = tmp_path / "p"
    assert create(micromamba_env, prefix, cuda_lock.lockfile).returncode == 0
    result = mm(micromamba_env, "create", "-p", str(prefix), "-f", str(cuda_lock.lockfile))
    assert result.returncode == 1
    assert (prefix / "bin" / "python").exists()


def test_a_non_conda_folder_is_never_overwritten(micromamba_env, cuda_lock, tmp_path):
    prefix = tmp_path / "p"
    prefix.mkdir()
    (prefix / "data.txt").write_text("not an environment")
    result = create(micromamba_env, prefix, cuda_lock.lockfile)
    assert result.returncode == 1
    assert "Non-conda folder exists" in result.stderr
    assert (prefix / "data.txt").exists()


def _stems(lockfile: Path) -> set[str]:
    return {
        p["url"].rsplit("/", 1)[-1].removesuffix(".conda").removesuffix(".tar.bz2")
        for p in lockfiles.lock_packages(lockfile)
    }


def test_double_lays_out_its_package_cache_like_micromamba_2_5(micromamba_env, cuda_lock, tmp_path):
    prefix = tmp_path / "p"
    assert create(micromamba_env, prefix, cuda_lock.lockfile).returncode == 0

    pkgs = Path(micromamba_env["CONDA_PKGS_DIRS"])
    packages = lockfiles.lock_packages(cuda_lock.lockfile)
    stems = _stems(cuda_lock.lockfile)
    # Flat: the tarballs, their extracted dirs and urls.txt; none of rattler's .lock files.
    assert {p.name for p in pkgs.iterdir()} == (
        {"urls.txt"} | stems | {p["url"].rsplit("/", 1)[-1] for p in packages}
    )
    assert sorted((pkgs / "urls.txt").read_text().split()) == sorted(p["url"] for p in packages)
    for package in packages:
        stem = package["url"].rsplit("/", 1)[-1].removesuffix(".conda").removesuffix(".tar.bz2")
        record = json.loads((pkgs / stem / "info" / "repodata_record.json").read_text())
        assert (record["url"], record["sha256"]) == (package["url"], package["hash"]["sha256"])
        meta = json.loads((prefix / "conda-meta" / f"{stem}.json").read_text())
        assert meta["extracted_package_dir"] == str(pkgs / stem)
    # Linked from the cache, as micromamba does on one filesystem.
    linked = prefix / "bin" / "ffmpeg"
    assert (
        linked.stat().st_ino
        == (pkgs / "ffmpeg-7.1-gpl_h0000000_0" / "bin" / "ffmpeg").stat().st_ino
    )


def test_second_create_reuses_the_extracted_packages(micromamba_env, cuda_lock, tmp_path):
    assert create(micromamba_env, tmp_path / "a", cuda_lock.lockfile).returncode == 0
    pkgs = Path(micromamba_env["CONDA_PKGS_DIRS"])
    urls = (pkgs / "urls.txt").read_text()

    assert create(micromamba_env, tmp_path / "b", cuda_lock.lockfile).returncode == 0

    assert (pkgs / "urls.txt").read_text() == urls  # nothing downloaded or extracted again


def test_double_playing_micromamba_2_6_keeps_packages_by_channel_and_subdir(
    micromamba_env, cuda_lock, tmp_path
):
    env = {**micromamba_env, "MICROMAMBA_DOUBLE_VERSION": "2.6.0"}
    assert mm(env, "--version").stdout.strip() == "2.6.0"
    assert create(env, tmp_path / "p", cuda_lock.lockfile).returncode == 0

    pkgs = Path(micromamba_env["CONDA_PKGS_DIRS"])
    folder = cache_folder(pkgs, cuda_lock.channel.url + "/linux-64/x.conda", "2.6.0")
    assert folder == pkgs / "file" / str(cuda_lock.channel.root.resolve()).lstrip("/") / "linux-64"
    assert _stems(cuda_lock.lockfile) <= {p.name for p in folder.iterdir()}
    assert (folder / "urls.txt").is_file() and (pkgs / "urls.txt").is_file()
    assert {p.name for p in pkgs.iterdir()} == {"urls.txt", "file"}


def test_cache_folder_follows_libmamba_for_real_urls(tmp_path):
    url = "https://user:secret@conda.anaconda.org/t/tok-123/conda-forge/linux-64/x-1-0.conda"
    assert cache_folder(tmp_path, url, "2.6.1") == (
        tmp_path / "https" / "conda.anaconda.org" / "conda-forge" / "linux-64"
    )
    local = "http://localhost:8000/mychannel/noarch/x-1-0.tar.bz2"
    assert (
        cache_folder(tmp_path, local, "2.8.0") == tmp_path / "http/localhost_8000/mychannel/noarch"
    )
    assert cache_folder(tmp_path, url, "2.5.0") == tmp_path
