#!/bin/sh
# Prints the id of the environment this checkout (or image) needs: 12 hex digits of
# the sha256 of the conda lock, the pip leftovers locks and the bootstrap's layout
# version. `docker build` stores it in bootstrap/env-id; the entrypoint computes the
# same bytes in the same order when that file is absent (a local checkout).
set -eu
# Byte order for the glob, whatever the locale: the id must not depend on it.
LC_ALL=C
export LC_ALL
app="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$app"
set -- requirements/leftovers*.txt
[ -e "$1" ] || set --
cat conda-lock.yml "$@" bootstrap/LAYOUT_VERSION | sha256sum | cut -c1-12
