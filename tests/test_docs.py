"""The docs stay true to the code: every variable the code reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

VARIABLE = re.compile(r"\b(F5TTS_[A-Z0-9_]*[A-Z0-9]|S3_BUCKET|AWS_[A-Z_]*[A-Z])\b")
CODE = ["bootstrap/*.sh", "bootstrap/*.py", "handler/*.py", "handler/engine/*.py"]


def variables_read_by_the_code() -> set[str]:
    found: set[str] = set()
    for pattern in CODE:
        for path in REPO.glob(pattern):
            found |= set(VARIABLE.findall(path.read_text()))
    return found


def test_every_variable_the_code_reads_is_in_operations_md():
    documented = set(VARIABLE.findall((REPO / "docs/operations.md").read_text()))
    missing = sorted(variables_read_by_the_code() - documented)
    assert not missing, f"add these to the Variables table of docs/operations.md: {missing}"


def test_operations_md_documents_no_variable_the_code_does_not_read():
    documented = set(VARIABLE.findall((REPO / "docs/operations.md").read_text()))
    # Standard AWS credential variables are read by boto3 itself, not by our code.
    read_by_boto3 = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    stale = sorted(documented - variables_read_by_the_code() - read_by_boto3)
    assert not stale, f"docs/operations.md documents variables nothing reads: {stale}"


def test_test_input_json_is_the_example_in_api_md_and_a_valid_job():
    import json

    from handler.schema import TtsJob, parse_job

    example = (REPO / "test_input.json").read_text()
    assert example.strip() in (REPO / "docs/api.md").read_text()
    assert isinstance(parse_job(json.loads(example)["input"]), TtsJob)


def test_the_start_budget_is_one_number_in_the_docs_and_the_image():
    """docs/operations.md's RUNPOD_INIT_TIMEOUT (what to set on the endpoint) is the
    image's ENV, and the first-build figure waiters assume is the docs' one."""
    ops = (REPO / "docs/operations.md").read_text()
    documented = set(re.findall(r"RUNPOD_INIT_TIMEOUT(?:=|\s+)(\d+)", ops))
    documented |= set(re.findall(r"RUNPOD_INIT_TIMEOUT`[^\n]*?\*\*(\d+)\*\*", ops))
    dockerfile = (REPO / "Dockerfile.runpod").read_text()
    image = re.findall(r"^\s*(?:ENV\s+)?RUNPOD_INIT_TIMEOUT=(\d+)", dockerfile, re.M)
    assert image, "Dockerfile.runpod sets no ENV RUNPOD_INIT_TIMEOUT"
    assert documented == set(image), (documented, image)
    entrypoint = (REPO / "bootstrap/entrypoint.sh").read_text()
    [first_build_s] = re.findall(r"^DEFAULT_BUILD_S=(\d+)$", entrypoint, re.M)
    assert f"else {first_build_s} s, the" in " ".join(ops.split())


def test_runpod_python_does_not_read_runpod_init_timeout():
    """It is the platform's variable (docs/operations.md, "Start budget"): if the SDK
    ever reads it, the docs must say what it does with it."""
    import runpod

    package = Path(runpod.__file__).parent
    readers = [p for p in package.rglob("*.py") if "RUNPOD_INIT_TIMEOUT" in p.read_text()]
    assert readers == []
