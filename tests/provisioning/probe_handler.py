"""Stands in for `python -m handler`: reports what the entrypoint exec'd, then exits.

Copied into the test app directory; the entrypoint runs it as
`F5TTS_HANDLER_MODULE=probe_handler`. Its last stdout line is one JSON object.
"""

import json
import os
import sys
from pathlib import Path

REPORTED_ENV = (
    "F5TTS_ENV_ID",
    "F5TTS_ENV_PREFIX",
    "F5TTS_IN_USE_RECORD",
    "HF_HOME",
    "TORCH_HOME",
    "PIP_CACHE_DIR",
    "NLTK_DATA",
    "HF_HUB_OFFLINE",
    "PYTHONUNBUFFERED",
    "CONDA_PREFIX",
    "PATH",
)

prefix = Path(os.environ.get("F5TTS_ENV_PREFIX", sys.prefix))
print(
    json.dumps(
        {
            "argv": sys.argv[1:],
            "pid": os.getpid(),
            "executable": sys.executable,
            "sys_prefix": sys.prefix,
            # Checked by the handler itself: an unmarked prefix must never be run.
            "marker_present": (prefix / ".f5tts" / "ready.json").is_file(),
            "env": {name: os.environ.get(name) for name in REPORTED_ENV},
        }
    )
)
