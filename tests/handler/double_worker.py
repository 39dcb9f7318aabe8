"""`python -m tests.handler.double_worker [runpod flags]`: the real worker wiring
(handler.worker.main, runpod's SDK) with the test doubles instead of the models.

F5TTS_TEST_DOUBLE=broken makes the model factory fail the way missing weights do.
"""

from __future__ import annotations

import os

from handler.worker import main
from tests.handler.doubles import double_models


def factory(settings):
    if os.environ.get("F5TTS_TEST_DOUBLE") == "broken":
        raise FileNotFoundError(
            "the F5-TTS checkpoint is missing; run `python -m bootstrap fetch-models`"
        )
    return double_models(settings)


if __name__ == "__main__":
    main(factory)
