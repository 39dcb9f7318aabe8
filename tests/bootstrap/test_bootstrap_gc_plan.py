"""What gc decides to delete, from observed volume state alone (no filesystem)."""

from __future__ import annotations

from pathlib import Path

from bootstrap.gc import (
    AgedPath,
    CacheEntry,
    InUseRecord,
    Policy,
    PrefixState,
    VolumeState,
    hierarchical_folder,
    package_stem,
    plan_gc,
)

ENVS = Path("/vol/envs")
PKGS = Path("/vol/pkgs")
POLICY = Policy(in_use_ttl_s=900, grace_s=3600)


def prefix(env_id: str, marked: bool = True, age_s: float = 86400, packages=()) -> PrefixState:
    return PrefixState(env_id, ENVS / f"f5tts-{env_id}", marked, age_s, frozenset(packages))


def cached(relative: str) -> CacheEntry:
    """A tarball or extracted dir at pkgs/<relative>, keyed as gc.observe keys it."""
    folder, _, name = relative.rpartition("/")
    stem = package_stem(name) or name
    return CacheEntry(PKGS / relative, f"{folder}/{stem}" if folder else stem)


def deleted(plan) -> dict[Path, str]:
    return {d.path: d.reason for d in plan.deletions}


def test_active_and_previous_stay_and_an_older_env_goes():
    state = VolumeState(
        prefixes=(prefix("aaa111"), prefix("bbb222"), prefix("ccc333")),
        active_id="ccc333",
        previous_id="bbb222",
    )
    plan = plan_gc(state, POLICY)
    assert deleted(plan) == {ENVS / "f5tts-aaa111": "not active, previous or in use"}
    assert plan.kept == {"ccc333": "active", "bbb222": "previous"}


def test_an_old_env_still_running_a_worker_stays_until_its_record_goes_stale():
    state = VolumeState(
        prefixes=(prefix("aaa111"), prefix("ccc333")),
        active_id="ccc333",
        previous_id=None,
        in_use=(InUseRecord("aaa111", ENVS / ".in-use/aaa111/host-12", age_s=899),),
    )
    assert plan_gc(state, POLICY).kept["aaa111"] == "in use"
    assert deleted(plan_gc(state, POLICY)) == {}

    stale = VolumeState(
        prefixes=state.prefixes,
        active_id="ccc333",
        previous_id=None,
        in_use=(InUseRecord("aaa111", ENVS / ".in-use/aaa111/host-12", age_s=901),),
    )
    assert set(deleted(plan_gc(stale, POLICY))) == {
        ENVS / "f5tts-aaa111",
        ENVS / ".in-use/aaa111/host-12",
    }


def test_an_unmarked_env_is_a_crashed_build_when_no_build_lease_is_held():
    state = VolumeState(
        prefixes=(prefix("ddd444", marked=False, age_s=10),), active_id=None, previous_id=None
    )
    assert deleted(plan_gc(state, POLICY)) == {ENVS / "f5tts-ddd444": "unmarked: a crashed build"}


def test_a_young_unmarked_env_under_a_held_build_lease_is_being_built():
    state = VolumeState(
        prefixes=(prefix("ddd444", marked=False, age_s=600),),
        active_id=None,
        previous_id=None,
        build_lease_held=True,
    )
    plan = plan_gc(state, POLICY)
    assert plan.kept == {"ddd444": "being built"}
    assert deleted(plan) == {}


def test_a_fresh_env_another_builder_is_about_to_activate_stays():
    state = VolumeState(
        prefixes=(prefix("ccc333"), prefix("eee555", marked=True, age_s=900)),
        active_id="ccc333",
        previous_id=None,
        build_lease_held=True,
    )
    plan = plan_gc(state, POLICY)
    assert plan.kept == {"ccc333": "active", "eee555": "being published"}
    assert deleted(plan) == {}


def test_an_unmarked_env_older_than_the_grace_period_goes_even_under_a_lease():
    state = VolumeState(
        prefixes=(prefix("ddd444", marked=False, age_s=3601),),
        active_id=None,
        previous_id=None,
        build_lease_held=True,
    )
    assert deleted(plan_gc(state, POLICY)) == {
        ENVS / "f5tts-ddd444": "unmarked: an old unfinished build"
    }


def test_package_files_only_kept_envs_name_are_kept():
    state = VolumeState(
        prefixes=(
            prefix("aaa111", packages={"torch-1.0-old_0"}),
            prefix("ccc333", packages={"pytorch-2.8.0-cuda129_0", "python-3.11.7-h_0"}),
        ),
        active_id="ccc333",
        previous_id=None,
        pkgs=(
            cached("pytorch-2.8.0-cuda129_0.conda"),
            cached("pytorch-2.8.0-cuda129_0"),
            cached("python-3.11.7-h_0.tar.bz2"),
            cached("torch-1.0-old_0.conda"),
            cached("torch-1.0-old_0"),
        ),
    )
    assert set(deleted(plan_gc(state, POLICY))) == {
        ENVS / "f5tts-aaa111",
        PKGS / "torch-1.0-old_0.conda",
        PKGS / "torch-1.0-old_0",
    }


def test_hierarchical_cache_entries_are_kept_by_their_channel_folder():
    cf = "https/conda.anaconda.org/conda-forge/linux-64"
    state = VolumeState(
        prefixes=(
            prefix("ccc333", packages={"pytorch-2.8.0-cuda129_0", f"{cf}/pytorch-2.8.0-cuda129_0"}),
        ),
        active_id="ccc333",
        previous_id=None,
        pkgs=(
            cached(f"{cf}/pytorch-2.8.0-cuda129_0.conda"),
            cached(f"{cf}/pytorch-2.8.0-cuda129_0"),
            # The same name from another channel is another package.
            cached("https/example.org/other/linux-64/pytorch-2.8.0-cuda129_0.conda"),
            cached(f"{cf}/torch-1.0-old_0.conda"),
        ),
    )
    assert set(deleted(plan_gc(state, POLICY))) == {
        PKGS / "https/example.org/other/linux-64/pytorch-2.8.0-cuda129_0.conda",
        PKGS / f"{cf}/torch-1.0-old_0.conda",
    }


def test_package_files_are_left_alone_while_a_build_may_be_downloading():
    state = VolumeState(
        prefixes=(prefix("ccc333"),),
        active_id="ccc333",
        previous_id=None,
        build_lease_held=True,
        pkgs=(cached("freshly-downloaded-1.0-0.conda"),),
    )
    assert deleted(plan_gc(state, POLICY)) == {}


def test_old_takeover_dirs_and_trash_are_cleared():
    leases = ENVS / ".leases"
    state = VolumeState(
        prefixes=(),
        active_id=None,
        previous_id=None,
        takeovers=(
            AgedPath(leases / "env.takeover.t1", age_s=7200),
            AgedPath(leases / "env.takeover.t2", age_s=60),
        ),
        trash=(ENVS / ".trash/f5tts-aaa111.1234abcd",),
    )
    assert set(deleted(plan_gc(state, POLICY))) == {
        leases / "env.takeover.t1",
        ENVS / ".trash/f5tts-aaa111.1234abcd",
    }


def test_package_stems_cover_both_archive_formats():
    assert package_stem("ffmpeg-7.1-gpl_h0_0.conda") == "ffmpeg-7.1-gpl_h0_0"
    assert package_stem("ffmpeg-7.1-gpl_h0_0.tar.bz2") == "ffmpeg-7.1-gpl_h0_0"
    assert package_stem("urls.txt") is None


def test_hierarchical_folders_follow_libmamba_2_6():
    """The examples of libmamba's package_cache_folder_relative_path (mamba PR #4163)."""
    assert hierarchical_folder("https://repo.example.com/channel/noarch/x-1-0.conda") == (
        "https/repo.example.com/channel/noarch"
    )
    assert hierarchical_folder("http://localhost:8000/mychannel/noarch/x-1-0.tar.bz2") == (
        "http/localhost_8000/mychannel/noarch"
    )
    assert hierarchical_folder("oci://ghcr.io/org/channel/linux-64/x-1-0.conda") == (
        "oci/ghcr.io/org/channel/linux-64"
    )
    # Credentials and tokens never become folders.
    secret = "https://me:pw@conda.anaconda.org/t/tk-1/conda-forge/linux-64/x-1-0.conda"
    assert hierarchical_folder(secret) == "https/conda.anaconda.org/conda-forge/linux-64"
