"""`python -m handler`: the RunPod worker (SDK flags such as --rp_serve_api and
--test_input work as runpod-python defines them)."""

from handler.worker import main

if __name__ == "__main__":
    main()
