"""Session-wide test set-up: the repository on sys.path and ffmpeg on PATH.

ffmpeg comes from the pinned imageio-ffmpeg wheel, so no test relies on a system
package being installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def ffmpeg_bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding an `ffmpeg` executable, prepended to PATH for the session."""
    import imageio_ffmpeg

    bin_dir = tmp_path_factory.mktemp("ffmpeg-bin")
    (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return bin_dir


# The provisioning test kit (local conda channel, micromamba double, lockfiles, wheels).
pytest_plugins = ("tests.support.fixtures",)
