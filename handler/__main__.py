"""`python -m handler`: the RunPod worker (SDK flags such as --rp_serve_api and
--test_input work as runpod-python defines them)."""

# First, before the imports below take their time: as PID 1 the worker would ignore a
# SIGTERM that arrived before any handler is installed (handler/shutdown.py).
from handler.shutdown import exit_on_sigterm

exit_on_sigterm()

from handler.worker import main  # noqa: E402

if __name__ == "__main__":
    main()
