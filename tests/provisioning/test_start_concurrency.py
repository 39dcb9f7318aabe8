"""Many workers cold-starting on one volume build the env exactly once."""

from __future__ import annotations

import re

from tests.provisioning.deployment import Site

WORKERS = 8


def test_eight_workers_started_together_realize_once_and_all_exec_from_the_same_prefix(
    site: Site,
):
    workers = [site.start("--worker", str(i)) for i in range(WORKERS)]
    results = [w.result(timeout=180) for w in workers]

    for result in results:
        assert result.returncode == 0, result.stderr
    assert site.realizations() == 1
    prefix = site.envs / f"f5tts-{site.env_id()}"
    assert {r.probe["executable"] for r in results} == {str(prefix / "bin" / "python")}
    assert all(r.probe["marker_present"] for r in results)
    assert sorted(r.probe["argv"][1] for r in results) == [str(i) for i in range(WORKERS)]

    summaries = [r.stderr.splitlines()[-1] for r in results]
    builders = [s for s in summaries if " ready: cold " in s]
    assert len(builders) == 1, summaries
    # Everyone else either waited for the builder's lease or came after it.
    waiters = [s for s in summaries if " ready: warm " in s and " for=-" not in s]
    for summary in waiters:
        assert re.search(r"for=[^ ]+:\d+ ", summary), summary
    assert site.prefixes() == [prefix]
