#!/bin/sh
# Prints the id of the environment this checkout (or image) needs: 12 hex digits of
# the sha256 of the conda lock, the pip leftovers locks and the bootstrap's layout
# version. `docker build` stores it in bootstrap/env-id; the entrypoint computes it
# with this same script when that file is absent (a local checkout).
set -eu
app="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$app"
# shellcheck disable=SC2046
cat conda-lock.yml $(ls requirements/leftovers*.txt 2>/dev/null) bootstrap/LAYOUT_VERSION |
    sha256sum | cut -c1-12
