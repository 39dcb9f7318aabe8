#!/bin/sh
# Prints the id of the environment a checkout (or image) needs: 12 hex digits of the
# sha256 of the conda lock, the pip leftovers locks and the bootstrap's layout
# version. `docker build` stores it in bootstrap/env-id; the entrypoint runs this
# same script when that file is absent (a local checkout).
#   env-id.sh [APP_DIR [LOCKFILE]]     LOCKFILE defaults to APP_DIR/conda-lock.yml
set -eu
# Byte order for the glob, whatever the locale: the id must not depend on it.
LC_ALL=C
export LC_ALL
app="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
lockfile="${2:-$app/conda-lock.yml}"
set -- "$app"/requirements/leftovers*.txt
[ -e "$1" ] || set --
cat "$lockfile" "$@" "$app/bootstrap/LAYOUT_VERSION" | sha256sum | cut -c1-12
