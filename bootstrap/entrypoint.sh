#!/bin/sh
# The container's entrypoint: makes sure the locked conda env for this image exists on
# the network volume, then execs the handler from it (docs/architecture.md, "Start
# sequence"). A warm start reads a few files and execs: no lease, no micromamba, no
# network. A cold start builds the env once per volume under a cross-machine lease.
# Failures a restart cannot fix print one sentence and exit 10-29
# (docs/troubleshooting.md); the Python stage it runs uses 30-49.
set -eu

# ---------------------------------------------------------------- settings (read once)
case $0 in
*/*) SCRIPT_DIR=${0%/*} ;;
*) SCRIPT_DIR=$(dirname "$(command -v "$0")") ;;
esac
: "${F5TTS_VOLUME:=/runpod-volume}"
[ -n "${F5TTS_APP_DIR:-}" ] || F5TTS_APP_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
: "${F5TTS_LOCKFILE:=$F5TTS_APP_DIR/conda-lock.yml}"
# An explicit MICROMAMBA must be the pinned version; without one the bootstrap finds
# or fetches the pinned one (find_micromamba).
MICROMAMBA_EXPLICIT=${MICROMAMBA:+1}
: "${MICROMAMBA:=micromamba}"
: "${F5TTS_MIN_FREE_GB:=25}"
: "${F5TTS_LEASE_STALE_S:=120}"
: "${F5TTS_LEASE_HEARTBEAT_S:=5}"
: "${F5TTS_LEASE_WAIT_MAX_S:=3600}"
: "${F5TTS_LEASE_POLL_MAX_S:=5}"
: "${F5TTS_REALIZE_RETRIES:=3}"
: "${F5TTS_PROGRESS_S:=10}"
: "${F5TTS_FETCH_MODELS:=1}"
: "${F5TTS_HANDLER_MODULE:=handler}"
: "${F5TTS_ALLOWED_CHANNEL:=https://conda.anaconda.org/conda-forge}"
F5TTS_ALLOWED_CHANNEL=${F5TTS_ALLOWED_CHANNEL%/}
# The Python stage (bootstrap/settings.py) reads the same names: it must see the same values.
export F5TTS_VOLUME F5TTS_APP_DIR F5TTS_LOCKFILE F5TTS_MIN_FREE_GB F5TTS_LEASE_STALE_S \
    F5TTS_FETCH_MODELS F5TTS_ALLOWED_CHANNEL
# Every cache on the volume: the container disk is small and forgets at each start.
: "${HF_HOME:=$F5TTS_VOLUME/cache/huggingface}"
: "${TORCH_HOME:=$F5TTS_VOLUME/cache/torch}"
: "${PIP_CACHE_DIR:=$F5TTS_VOLUME/cache/pip}"
: "${NLTK_DATA:=$F5TTS_VOLUME/cache/nltk}"
export HF_HOME TORCH_HOME PIP_CACHE_DIR NLTK_DATA

APP=$F5TTS_APP_DIR
ENVS=$F5TTS_VOLUME/envs
LEASES_DIR=$ENVS/.leases
MODELS_MARKER=$F5TTS_VOLUME/models/.ready.json
# What waiting workers expect a holder's work to take when no earlier build on this
# volume recorded its time: the arithmetic is in docs/operations.md ("Start budget").
DEFAULT_BUILD_S=600
DEFAULT_MODELS_S=120
# The PATH micromamba sees when it writes the saved activation: the script bakes it
# in, so it must not carry whatever PATH this container happened to start with.
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV_ID=
PREFIX=
MICROMAMBA_BIN=
PINS_LOADED=
CHILD_PID=
# A download of micromamba in progress: removed when the worker stops mid-way, so an
# interrupted fetch leaves nothing on the volume (each worker's temp name differs).
FETCH_PART=
NEWLINE='
'
TICKER_PID=
TICKER_FLAG=
START=warm
DOWNLOADED_MB=0
LINKED=0
WAITED_CS=0
WAITED_FOR=-

# ---------------------------------------------------------------- small helpers

log() { printf '[bootstrap] %s\n' "$*" >&2; }

die() {
    _die_code=$1
    shift
    printf '[bootstrap] error %s: %s\n' "$_die_code" "$*" >&2
    exit "$_die_code"
}

# Sets NOW_CS (centiseconds) without forking: the warm path budget is ~20 ms.
# /proc/uptime is also monotonic, which the lease's staleness needs.
clock() {
    if { read -r _clock_up _clock_rest </proc/uptime; } 2>/dev/null; then
        NOW_CS=$((${_clock_up%.*} * 100 + 1${_clock_up#*.} - 100))
    else
        NOW_CS=$(($(date +%s) * 100))
    fi
}

# Sets FMT to centiseconds $1 as seconds with two decimals.
fmt_s() { FMT="$(($1 / 100)).$(($1 % 100 / 10))$(($1 % 10))"; }

# Sets CS to the seconds value $1 (e.g. "2" or "0.25") in centiseconds.
to_cs() {
    case $1 in
    *.*)
        _cs_frac=${1#*.}00
        _cs_frac=${_cs_frac%"${_cs_frac#??}"}
        CS=$((${1%%.*} * 100 + 1$_cs_frac - 100))
        ;;
    *) CS=$(($1 * 100)) ;;
    esac
}

require_number() {
    case $2 in
    '' | .* | *. | *[!0-9.]* | *.*.*) die 20 "$1=$2 is not a number; set it to a plain number like 5 or 0.5, or unset it for the default." ;;
    esac
}

require_integer() {
    case $2 in
    '' | *[!0-9]*) die 20 "$1=$2 is not a whole number; set it to one like 3, or unset it for the default." ;;
    esac
}

# phase NAME [ARGS]: runs the step NAME and logs how long it took; a lease holder
# also notes the step in its lease, for the workers waiting for it.
phase() {
    clock
    _phase_start=$NOW_CS
    lease_progress "$1"
    "$@"
    clock
    fmt_s $((NOW_CS - _phase_start))
    log "$1 ${FMT}s"
}

env_ready() { [ -f "$PREFIX/.f5tts/ready.json" ] && [ -f "$PREFIX/.f5tts/activate.sh" ]; }

models_ready() { [ -f "$MODELS_MARKER" ]; }

# Runs "$@" in the background and waits for it: sh runs a trap only once the
# foreground command is done, so a SIGTERM during a long child (micromamba, the Python
# stage, a download, a sleep) would wait for it. `wait` is cut short by the signal
# instead, and stop_child then ends the child. With setsid the child leads its own
# process group (a background job of a non-interactive sh is never a group leader, so
# setsid execs in place and $! stays its pid), and stop_child ends its children too.
run_child() {
    $SETSID "$@" &
    wait_child $!
}

wait_child() {
    CHILD_PID=$1
    wait "$CHILD_PID" && _child_rc=0 || _child_rc=$?
    CHILD_PID=
    return "$_child_rc"
}

# Whether the child is still running (a zombie has stopped: nobody waited for it yet).
child_running() {
    if { read -r _cs_pid _cs_comm _cs_state _cs_rest </proc/"$CHILD_PID"/stat; } 2>/dev/null; then
        [ "$_cs_state" != Z ]
    else
        kill -0 "$CHILD_PID" 2>/dev/null
    fi
}

# Ends the running child and its process group: TERM, up to a second to stop cleanly,
# then KILL for whatever is left (a grandchild that outlived it included).
stop_child() {
    [ -n "$CHILD_PID" ] || return 0
    kill -TERM -- "-$CHILD_PID" 2>/dev/null || kill -TERM "$CHILD_PID" 2>/dev/null || :
    _sc_tries=0
    while child_running && [ "$_sc_tries" -lt 10 ]; do
        sleep 0.1
        _sc_tries=$((_sc_tries + 1))
    done
    kill -KILL -- "-$CHILD_PID" 2>/dev/null || kill -KILL "$CHILD_PID" 2>/dev/null || :
    CHILD_PID=
}

# Runs `python -m bootstrap ARGS` from the env, activated as the handler will be.
run_bootstrap_python() {
    (
        set +eu
        # shellcheck disable=SC1091
        . "$PREFIX/.f5tts/activate.sh"
        set -eu
        PYTHONPATH="$APP${PYTHONPATH:+:$PYTHONPATH}" exec $SETSID "$PREFIX/bin/python" -m bootstrap "$@" >&2
    ) &
    wait_child $!
}

# shellcheck source=bootstrap/lease.sh
. "$SCRIPT_DIR/lease.sh"

on_exit() {
    stop_child
    [ -z "$FETCH_PART" ] || rm -f "$FETCH_PART"
    stop_ticker
    release_lease
}

# ---------------------------------------------------------------- the steps

check_volume() {
    [ -d "$F5TTS_VOLUME" ] ||
        die 10 "the network volume $F5TTS_VOLUME is not mounted: attach a network volume to the endpoint (RunPod mounts it at /runpod-volume), or set F5TTS_VOLUME to a writable directory."
    if [ ! -w "$F5TTS_VOLUME" ] || { [ -e "$ENVS" ] && [ ! -w "$ENVS" ]; }; then
        die 11 "the network volume $F5TTS_VOLUME is not writable by uid $(id -u): run the worker as the volume's owner or fix the volume's permissions."
    fi
}

compute_env_id() {
    if [ -f "$APP/bootstrap/env-id" ]; then
        # Written by `docker build` (bootstrap/env-id.sh): no hashing at start.
        read -r ENV_ID <"$APP/bootstrap/env-id" || :
    else
        [ -f "$F5TTS_LOCKFILE" ] || die_no_lockfile
        [ -f "$APP/bootstrap/LAYOUT_VERSION" ] ||
            die 21 "$APP/bootstrap/LAYOUT_VERSION is missing: the app directory is incomplete; rebuild the image (or restore the file from git)."
        # The script `docker build` runs, so a checkout and its image agree on the id.
        ENV_ID=$(sh "$SCRIPT_DIR/env-id.sh" "$APP" "$F5TTS_LOCKFILE")
    fi
    case $ENV_ID in
    [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
    *) die 21 "$APP/bootstrap/env-id holds '$ENV_ID', not 12 hex digits: rebuild the image (docker build writes it with bootstrap/env-id.sh)." ;;
    esac
    PREFIX=$ENVS/f5tts-$ENV_ID
}

die_no_lockfile() {
    die 13 "no conda-lock.yml at $F5TTS_LOCKFILE: a maintainer runs bootstrap/lock to make it (on a machine that reaches conda-forge) and commits it; see docs/lockfile.md."
}

# A structural look at the lock before anything is downloaded or deleted: everything
# the full validator (bootstrap/lockfile.py, which needs Python, i.e. the env) refuses
# and plain text shows. A lock refused only after the build would be rebuilt and
# refused again at every restart. The required packages come from the same list the
# validator reads (bootstrap/required-packages.txt). Lines are read as conda-lock 4
# writes them: `- name:` opens a package, its fields are two columns further in.
check_lockfile() {
    [ -f "$F5TTS_LOCKFILE" ] || die_no_lockfile
    [ -f "$SCRIPT_DIR/required-packages.txt" ] ||
        die 21 "$SCRIPT_DIR/required-packages.txt is missing: the app directory is incomplete; rebuild the image (or restore the file from git)."
    _lock_problem=$(awk -v channel="$F5TTS_ALLOWED_CHANNEL" '
        function value(line) {
            sub(/^[^:]*:[ \t]*/, "", line); gsub(/["\047 \t\r]/, "", line); return line
        }
        function indent(line) { match(line, /^[ \t]*/); return RLENGTH }
        function key_of(line) { sub(/^[ \t-]*/, "", line); sub(/:.*/, "", line); return line }
        function note(text) { if (problem == "") problem = text }
        function close_package(  file, build) {
            if (name == "") return
            if (manager != "conda") {
                note("package " name " is a " manager " package, and pip packages belong in requirements/leftovers.in, not in the lock")
            } else {
                if (platform != "linux-64")
                    note("package " name " is locked for platform " (platform == "" ? "none" : platform) ", not linux-64")
                if (url == "") note("package " name " has no url")
                else if (index(url, channel "/linux-64/") != 1 && index(url, channel "/noarch/") != 1)
                    note("package " name " comes from " url ", outside " channel "/linux-64 and " channel "/noarch")
                if (sha == "") note("package " name " has no sha256")
                else if (length(sha) != 64 || sha ~ /[^0-9a-f]/) note("package " name " has a malformed sha256")
                file = url; sub(/.*\//, "", file); sub(/\.(conda|tar\.bz2)$/, "", file)
                build = file; sub(/.*-/, "", build)
                locked[name] = 1; build_of[name] = build
            }
            name = ""
        }
        FNR == NR {
            if ($0 !~ /^[ \t]*(#|$)/) { required[++required_count] = $1; cuda_like[$1] = ($2 == "-" ? "" : $2) }
            next
        }
        /^[^ \t#-]/ {
            close_package(); section = key_of($0); if (section == "version") version = value($0)
            if (section != "version" && section != "metadata" && section != "package" && stray == "") {
                stray = $0; sub(/[ \t\r]+$/, "", stray); stray_line = FNR
            }
            next
        }
        section == "metadata" {
            if ($0 !~ /^[ \t]*-/ && $0 ~ /:/) {
                if (meta_indent == "" || indent($0) <= meta_indent) { meta_key = key_of($0); meta_indent = indent($0); item_indent = "" }
                next
            }
            if ($0 !~ /^[ \t]*-/) next
            if (item_indent == "") item_indent = indent($0)
            if (indent($0) != item_indent) next
            item = $0; sub(/^[ \t]*-[ \t]*/, "", item)
            if (item ~ /^url:/) item = value(item); else gsub(/["\047 \t\r]/, "", item)
            if (meta_key == "platforms") { platforms = platforms (platforms == "" ? "" : ", ") item; if (item != "linux-64") other_platform = 1 }
            if (meta_key == "channels" && item != channel && item != channel "/" && item != "nodefaults" &&
                !(item == "conda-forge" && channel == "https://conda.anaconda.org/conda-forge") && bad_channel == "")
                bad_channel = item
            next
        }
        section != "package" { next }
        /^[ \t]*- name:/ {
            close_package(); name = value($0); field_indent = indent($0) + 2
            manager = "conda"; platform = ""; url = ""; sha = ""; block = ""; packages++
            next
        }
        name == "" { next }
        indent($0) == field_indent && /^[ \t]*[a-z_]+:/ {
            block = key_of($0)
            if (block == "manager") manager = value($0)
            else if (block == "platform") platform = value($0)
            else if (block == "url") url = value($0)
            next
        }
        indent($0) > field_indent && block == "hash" && /^[ \t]*sha256:/ { sha = value($0) }
        END {
            close_package()
            # A merge conflict, say: micromamba would fail on it only after deleting the prefix.
            if (stray != "") { print "its line " stray_line " (" stray ") is none of the top-level keys conda-lock writes: version, metadata, package; a merge conflict?"; exit }
            if (version != "1") { print "it is not a conda-lock version 1 file"; exit }
            if (packages == 0) { print "it lists no packages"; exit }
            if (platforms == "" || other_platform) { print "it covers the platforms " (platforms == "" ? "none" : platforms) ", not linux-64 alone"; exit }
            if (bad_channel != "") { print "it was solved with the channel " bad_channel ", and only " channel " may be used"; exit }
            if (problem != "") { print problem; exit }
            for (i = 1; i <= required_count; i++) {
                r = required[i]
                if (!(r in locked)) { print "it has no " r ", which environment.yml must list"; exit }
                if (cuda_like[r] != "" && index(build_of[r], cuda_like[r]) != 1) {
                    print r " is the build " build_of[r] ", not a " cuda_like[r] " build: pin " r "=*=" cuda_like[r] "* in environment.yml"; exit
                }
            }
        }' "$SCRIPT_DIR/required-packages.txt" "$F5TTS_LOCKFILE")
    [ -z "$_lock_problem" ] ||
        die 14 "$F5TTS_LOCKFILE is not a usable lock ($_lock_problem): a maintainer regenerates it with bootstrap/lock and commits it; see docs/lockfile.md."
}

# README step 1 on a fresh clone: no lock yet, so it is made first, by the command
# maintainers run (bootstrap/lock), with its tools env on the volume and under a lease,
# so two local workers do not lock at once. Never in the image: its build makes the
# lock and writes bootstrap/env-id.
make_missing_lock() {
    acquire_lease lock
    if [ ! -f "$F5TTS_LOCKFILE" ]; then
        # Under the lease, like the builder's: workers starting together fetch it once.
        find_micromamba
        log "no conda-lock.yml in $APP yet: making it with bootstrap/lock (a conda-forge solve, minutes)"
        # run_child: a SIGTERM during this long step must not wait for it to finish.
        run_child env MAMBA_USE_LOCKFILES=false "$APP/bootstrap/lock" --conda-only \
            --micromamba "$MICROMAMBA_BIN" --tools-dir "$F5TTS_VOLUME/tools" \
            --channel "$F5TTS_ALLOWED_CHANNEL" </dev/null >&2 && _rc=0 || _rc=$?
        [ "$_rc" -eq 0 ] ||
            die 13 "no conda-lock.yml at $F5TTS_LOCKFILE, and bootstrap/lock could not make it (exit $_rc, its reason is above): fix that cause and restart, or make the lock where Docker runs (bootstrap/lock --docker) and commit it; see docs/lockfile.md."
        log "made the lock $F5TTS_LOCKFILE: commit it, so every later build and start installs exactly these packages"
    fi
    release_lease
}

# The tool versions (bootstrap/pins.env), read only on a cold start: the warm path
# never needs them, and its budget is a few ms.
load_pins() {
    [ -z "$PINS_LOADED" ] || return 0
    [ -f "$SCRIPT_DIR/pins.env" ] ||
        die 21 "$SCRIPT_DIR/pins.env is missing: the app directory is incomplete; rebuild the image (or restore the file from git)."
    # shellcheck source=/dev/null  # KEY=VALUE lines only
    . "$SCRIPT_DIR/pins.env"
    PINS_LOADED=1
}

# Sets FOUND_VERSION to what `$1 --version` prints ("unknown" when it cannot run).
micromamba_version() {
    FOUND_VERSION=$("$1" --version 2>/dev/null </dev/null) || FOUND_VERSION=
    FOUND_VERSION=${FOUND_VERSION%%"$NEWLINE"*}
    : "${FOUND_VERSION:=unknown}"
}

# Sets SHA256 to the sha256 of the file $1.
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        SHA256=$(sha256sum "$1") || SHA256=
    elif command -v shasum >/dev/null 2>&1; then
        SHA256=$(shasum -a 256 "$1") || SHA256=
    else
        die 24 "neither sha256sum nor shasum is installed, so the fetched micromamba cannot be verified: install coreutils, or install micromamba $MICROMAMBA_VERSION and put it on PATH."
    fi
    SHA256=${SHA256%% *}
}

# Sets MICROMAMBA_BIN to micromamba $MICROMAMBA_VERSION, the one every worker of every
# volume realizes with (docs/operations.md, "One micromamba"): $MICROMAMBA when set,
# refused when it is another version; else `micromamba` on PATH when it is the pinned
# version; else the verified copy on the volume, fetched the first time.
find_micromamba() {
    load_pins
    if [ -n "$MICROMAMBA_EXPLICIT" ]; then
        MICROMAMBA_BIN=$(command -v "$MICROMAMBA") && [ -x "$MICROMAMBA_BIN" ] ||
            die 15 "micromamba was not found at MICROMAMBA=$MICROMAMBA: point MICROMAMBA at micromamba $MICROMAMBA_VERSION, or unset it and the bootstrap uses the pinned one from PATH or fetches it onto the volume."
        micromamba_version "$MICROMAMBA_BIN"
        [ "$FOUND_VERSION" = "$MICROMAMBA_VERSION" ] ||
            die 23 "MICROMAMBA=$MICROMAMBA is micromamba $FOUND_VERSION, but every worker realizes with the pinned $MICROMAMBA_VERSION (bootstrap/pins.env): point MICROMAMBA at micromamba $MICROMAMBA_VERSION, or unset it and the bootstrap uses or fetches the pinned one."
    elif MICROMAMBA_BIN=$(command -v micromamba) && micromamba_version "$MICROMAMBA_BIN" &&
        [ "$FOUND_VERSION" = "$MICROMAMBA_VERSION" ]; then
        :
    else
        [ -z "$MICROMAMBA_BIN" ] ||
            log "passing over $MICROMAMBA_BIN (micromamba $FOUND_VERSION): every worker realizes with the pinned $MICROMAMBA_VERSION"
        fetch_micromamba
    fi
    log "micromamba $MICROMAMBA_VERSION at $MICROMAMBA_BIN"
}

# Sets MICROMAMBA_BIN to $F5TTS_VOLUME/bin/micromamba-<release>, the official static
# binary checked against its published sha256 (bootstrap/pins.env), fetched when the
# volume has no verified copy. Written aside, verified, made executable, then renamed:
# a download that fails its check leaves nothing behind that could be run.
fetch_micromamba() {
    _mm_dir=$F5TTS_VOLUME/bin
    _mm_bin=$_mm_dir/micromamba-$MICROMAMBA_RELEASE
    _mm_url=${F5TTS_MICROMAMBA_URL:-$MICROMAMBA_RELEASE_URL/$MICROMAMBA_RELEASE/micromamba-linux-64}
    _mm_sha=${F5TTS_MICROMAMBA_SHA256:-$MICROMAMBA_LINUX_64_SHA256}
    if [ -f "$_mm_bin" ]; then
        sha256_of "$_mm_bin"
        if [ "$SHA256" = "$_mm_sha" ]; then
            MICROMAMBA_BIN=$_mm_bin
            return 0
        fi
        log "the micromamba copy $_mm_bin does not match its sha256; fetching it again"
    fi
    case $(uname -m) in
    x86_64 | amd64) ;;
    *) die 24 "this machine is $(uname -m), but the pinned micromamba and the lock are for linux-64: run the worker on an x86_64 machine." ;;
    esac
    mkdir -p "$_mm_dir"
    _mm_tmp=$_mm_dir/.micromamba-$MICROMAMBA_RELEASE.$HOST.$$.part
    rm -f "$_mm_tmp"
    FETCH_PART=$_mm_tmp
    log "fetching micromamba $MICROMAMBA_RELEASE from $_mm_url"
    if command -v curl >/dev/null 2>&1; then
        _mm_tool=curl
        run_child curl -fsSL --retry 3 --connect-timeout 20 -o "$_mm_tmp" "$_mm_url" && _rc=0 || _rc=$?
    elif command -v wget >/dev/null 2>&1; then
        _mm_tool=wget
        run_child wget -q -T 20 -t 3 -O "$_mm_tmp" "$_mm_url" && _rc=0 || _rc=$?
    else
        die 24 "micromamba $MICROMAMBA_VERSION is not installed and neither curl nor wget is there to fetch it: install curl or wget, or install micromamba $MICROMAMBA_VERSION and put it on PATH."
    fi
    if [ "$_rc" -ne 0 ]; then
        rm -f "$_mm_tmp"
        die 24 "could not download micromamba from $_mm_url ($_mm_tool exit $_rc): check the network, or install micromamba $MICROMAMBA_VERSION and put it on PATH."
    fi
    sha256_of "$_mm_tmp"
    if [ "$SHA256" != "$_mm_sha" ]; then
        rm -f "$_mm_tmp"
        die 25 "the micromamba downloaded from $_mm_url has sha256 $SHA256, not the pinned $_mm_sha, so it was deleted unused: retry later, and if it persists check MICROMAMBA_RELEASE and its sha256 in bootstrap/pins.env against the release's micromamba-linux-64.sha256."
    fi
    chmod 755 "$_mm_tmp"
    mv -f "$_mm_tmp" "$_mm_bin"
    FETCH_PART=
    MICROMAMBA_BIN=$_mm_bin
}

# A prefix without a marker is a build that died (we hold the lease, so nobody is
# building it now). micromamba would delete it too, but only if it has conda-meta/.
remove_crashed_build() {
    if [ -e "$PREFIX" ] || [ -L "$PREFIX" ]; then
        log "removing the unfinished prefix $PREFIX left by a build that did not complete"
        rm -rf "$PREFIX"
    fi
}

check_space() {
    _free_kb=$(df -Pk "$F5TTS_VOLUME" | awk 'NR == 2 { print $4 }')
    if awk -v free="$_free_kb" -v min="$F5TTS_MIN_FREE_GB" 'BEGIN { exit !(free < min * 1048576) }'; then
        _free_gb=$(awk -v free="$_free_kb" 'BEGIN { printf "%.1f", free / 1048576 }')
        die 12 "the volume $F5TTS_VOLUME has ${_free_gb} GB free but building the environment needs ${F5TTS_MIN_FREE_GB} GB: free space (python -m bootstrap gc removes unused envs) or use a bigger volume; F5TTS_MIN_FREE_GB sets this threshold."
    fi
}

# Prints progress while micromamba works, so a long download never looks like a hang.
# Runs while the file $1 exists: stopping must not rely on a signal, which can be
# lost when it arrives right after the fork.
realize_ticker() {
    clock
    _tick_next=$((NOW_CS + PROGRESS_CS))
    _tick_start=$NOW_CS
    # The sleep gets no inherited pipes: killed mid-sleep, it must not hold them open.
    # Waited for in the background, so stop_ticker's TERM ends the sleep with the loop.
    trap 'kill "$_tick_sleep" 2>/dev/null; exit 0' TERM
    while :; do
        sleep 1 >/dev/null 2>&1 &
        _tick_sleep=$!
        wait "$_tick_sleep" || exit 0
        [ -e "$1" ] && kill -0 "$$" 2>/dev/null || exit 0
        clock
        [ "$NOW_CS" -ge "$_tick_next" ] || continue
        _tick_next=$((_tick_next + PROGRESS_CS))
        _tick_kb=$(du -sk "$F5TTS_VOLUME/pkgs" 2>/dev/null | cut -f1) || _tick_kb=0
        log "realize_env: $(((NOW_CS - _tick_start) / 100)) s so far, pkgs $((${_tick_kb:-0} / 1024)) MB"
    done
}

stop_ticker() {
    [ -n "$TICKER_PID" ] || return 0
    rm -f "$TICKER_FLAG"
    kill "$TICKER_PID" 2>/dev/null || :
    TICKER_PID=
}

realize_env() {
    mkdir -p "$F5TTS_VOLUME/pkgs" "$F5TTS_VOLUME/mamba"
    # micromamba writes its pip requirements file next to the lockfile, and /app may
    # be read-only; the name must end in -lock.yml for it to be read as a lock.
    _lock_tmp=$(mktemp -d "${TMPDIR:-/tmp}/f5tts-lock.XXXXXX")
    cp "$F5TTS_LOCKFILE" "$_lock_tmp/conda-lock.yml"
    TICKER_FLAG=$_lock_tmp/realizing
    : >"$TICKER_FLAG"
    realize_ticker "$TICKER_FLAG" </dev/null &
    TICKER_PID=$!
    _pkgs_kb_before=$(du -sk "$F5TTS_VOLUME/pkgs" | cut -f1)
    _attempt=1
    while :; do
        # MAMBA_USE_LOCKFILES=false: micromamba's fcntl locks hang on some network
        # filesystems, and our lease already serializes every writer of pkgs/ and envs/.
        run_child env CONDA_PKGS_DIRS="$F5TTS_VOLUME/pkgs" MAMBA_ROOT_PREFIX="$F5TTS_VOLUME/mamba" \
            MAMBA_USE_LOCKFILES=false "$MICROMAMBA_BIN" create -y -p "$PREFIX" \
            -f "$_lock_tmp/conda-lock.yml" </dev/null >&2 && _rc=0 || _rc=$?
        [ "$_rc" -ne 0 ] || break
        if [ "$_attempt" -ge "$F5TTS_REALIZE_RETRIES" ]; then
            stop_ticker
            rm -rf "$_lock_tmp"
            die 16 "micromamba could not realize $PREFIX from $F5TTS_LOCKFILE after $_attempt attempts (last exit $_rc, its reason is above): check the volume's free space and the network, and if a package's hash is wrong regenerate the lock with bootstrap/lock."
        fi
        # The next `create -y` starts by deleting the prefix: if this attempt stalled
        # long enough to be taken over, that prefix is now the new holder's build.
        require_env_lease
        _backoff=$((1 << _attempt))
        [ "$_backoff" -le 30 ] || _backoff=30
        log "realize attempt $_attempt of $F5TTS_REALIZE_RETRIES failed (exit $_rc); retrying in ${_backoff}s"
        run_child sleep "$_backoff"
        _attempt=$((_attempt + 1))
    done
    stop_ticker
    rm -rf "$_lock_tmp"
    # For the summary line: what this start added to the package cache, and how many
    # packages micromamba linked into the prefix.
    DOWNLOADED_MB=$((($(du -sk "$F5TTS_VOLUME/pkgs" | cut -f1) - _pkgs_kb_before) / 1024))
    set -- "$PREFIX"/conda-meta/*.json
    [ -e "$1" ] || set --
    LINKED=$#
}

# The handler starts by sourcing this file instead of calling micromamba: no network,
# no micromamba process, and activate.d scripts still run.
save_activation() {
    mkdir -p "$PREFIX/.f5tts"
    env -i PATH="$CLEAN_PATH" HOME="${HOME:-/root}" MAMBA_ROOT_PREFIX="$F5TTS_VOLUME/mamba" \
        "$MICROMAMBA_BIN" shell activate -s posix -p "$PREFIX" >"$PREFIX/.f5tts/activate.sh.tmp" &&
        _rc=0 || _rc=$?
    [ "$_rc" -eq 0 ] ||
        die 16 "micromamba could not write the activation script of $PREFIX (exit $_rc, its reason is above): fix that cause and restart, the next start rebuilds $PREFIX from scratch."
    mv -f "$PREFIX/.f5tts/activate.sh.tmp" "$PREFIX/.f5tts/activate.sh"
}

finish_env() {
    # finish re-checks the lease right before it writes the marker: a builder taken
    # over while it stalled in this long step must not mark the new holder's build.
    run_bootstrap_python finish --prefix "$PREFIX" --env-id "$ENV_ID" \
        --lease-dir "$LEASE_DIR" --lease-token "$LEASE_TOKEN" && _rc=0 || _rc=$?
    [ "$_rc" -eq 0 ] || require_env_lease
    # The Python stage printed its own sentence (cause and fix) above.
    [ "$_rc" -eq 0 ] ||
        die 18 "finishing the env failed (python -m bootstrap finish exited $_rc; its reason is above): fix that cause and restart, the next start rebuilds $PREFIX from scratch."
    [ -f "$PREFIX/.f5tts/ready.json" ] ||
        die 18 "python -m bootstrap finish exited 0 but wrote no marker in $PREFIX/.f5tts: the bootstrap code is broken; report it with this log."
}

# point_link LINK TARGET: makes LINK a symlink to TARGET by renaming a fresh symlink
# over it, so readers see the old link or the new one, never neither. -f: the temp
# name may be left by a worker killed right here, and $$ repeats across containers
# (the entrypoint is often pid 1); -n: never follow it.
point_link() {
    ln -sfn "$2" "$ENVS/.${1##*/}.$HOST.$$"
    mv -T "$ENVS/.${1##*/}.$HOST.$$" "$1"
}

# Points envs/f5tts at the new prefix (and envs/f5tts.previous at the one it replaces).
# The symlinks are for people and `bootstrap gc`; workers use envs/f5tts-<id>.
publish_env() {
    if [ -e "$ENVS/f5tts" ] && [ ! -L "$ENVS/f5tts" ]; then
        log "warning: $ENVS/f5tts is not a symlink, so it is left alone; move it away to get the envs/f5tts link"
        return 0
    fi
    _current=$(readlink "$ENVS/f5tts" 2>/dev/null) || _current=
    if [ -n "$_current" ] && [ "$_current" != "f5tts-$ENV_ID" ]; then
        point_link "$ENVS/f5tts.previous" "$_current"
    fi
    point_link "$ENVS/f5tts" "f5tts-$ENV_ID"
}

# envs/f5tts must lead to a ready env (`micromamba run -p .../envs/f5tts` and gc read
# it). A builder killed between its marker and publish_env leaves it missing, or
# pointing at an env gc has since removed; the next start repairs it. On the common
# path this is one stat and no fork (the warm budget); an envs/f5tts that is not a
# symlink is someone else's and publish_env warns about it.
repair_active_link() {
    [ ! -f "$ENVS/f5tts/.f5tts/ready.json" ] || return 0
    if [ -L "$ENVS/f5tts" ]; then
        _link_was="pointed at an env that is gone or unfinished"
    elif [ -e "$ENVS/f5tts" ]; then
        return 0
    else
        _link_was="was missing (a build stopped before publishing it)"
    fi
    point_link "$ENVS/f5tts" "f5tts-$ENV_ID"
    log "repaired $ENVS/f5tts: it $_link_was; it now points at f5tts-$ENV_ID"
}

require_env_lease() {
    lease_still_ours ||
        die 22 "this worker lost the env lease while building (its heartbeat stalled for over ${F5TTS_LEASE_STALE_S}s and another worker took over): it stops without marking or publishing anything and reuses the other worker's build on restart; if this repeats, the volume is stalling: raise F5TTS_LEASE_STALE_S."
}

# Runs while this worker still holds the env lease: a builder that took the lease
# during gc could otherwise link from package dirs gc is deleting, or have its new
# prefix renamed into the trash as "a crashed build" gc saw before it started.
collect_garbage() {
    run_bootstrap_python gc --lease-token "$LEASE_TOKEN" ||
        log "warning: python -m bootstrap gc failed (its reason is above); old envs stay on the volume until a later cold start collects them"
}

# For the waiters' estimate: how long the previous build on this volume took (recorded
# in the active env), else the documented first-build figure.
expect_build_time() {
    LEASE_EXPECTED_S=$DEFAULT_BUILD_S
    LEASE_EXPECTED_FROM="a first build takes about"
    { read -r _expect_s <"$ENVS/f5tts/.f5tts/build-seconds"; } 2>/dev/null || _expect_s=
    case $_expect_s in
    '' | *[!0-9]*) ;;
    *)
        LEASE_EXPECTED_S=$_expect_s
        LEASE_EXPECTED_FROM="the previous build took"
        ;;
    esac
}

# Kept with the env, for the next build's waiters (expect_build_time).
record_build_time() {
    clock
    printf '%s\n' $(((NOW_CS - LEASE_TAKEN_CS) / 100)) >"$PREFIX/.f5tts/build-seconds" 2>/dev/null || :
}

build_env() {
    phase check_lockfile
    expect_build_time
    phase acquire_lease env env_ready
    WAITED_CS=$((WAITED_CS + LEASE_WAITED_CS))
    [ "$LEASE_WAITED_FOR" = - ] || WAITED_FOR=$LEASE_WAITED_FOR
    if env_ready; then
        log "env $ENV_ID was built by another worker while this one waited"
        release_lease
        return 0
    fi
    START=cold
    # Only the builder needs micromamba (waiters may never): found, or fetched onto
    # the volume, under the lease, so 50 workers starting together fetch it once.
    phase find_micromamba
    mkdir -p "$ENVS" "$HF_HOME" "$TORCH_HOME" "$PIP_CACHE_DIR" "$NLTK_DATA"
    phase remove_crashed_build
    phase check_space
    phase realize_env
    require_env_lease
    phase save_activation
    phase finish_env
    require_env_lease
    record_build_time
    phase publish_env
    phase collect_garbage
    release_lease
}

ensure_models() {
    [ "$F5TTS_FETCH_MODELS" = 1 ] || return 0
    ! models_ready || return 0
    register_in_use
    LEASE_EXPECTED_S=$DEFAULT_MODELS_S
    LEASE_EXPECTED_FROM="fetching the weights takes about"
    acquire_lease models models_ready
    WAITED_CS=$((WAITED_CS + LEASE_WAITED_CS))
    [ "$LEASE_WAITED_FOR" = - ] || WAITED_FOR=$LEASE_WAITED_FOR
    if ! models_ready; then
        clock
        lease_progress fetch-models
        run_bootstrap_python fetch-models && _rc=0 || _rc=$?
        [ "$_rc" -eq 0 ] ||
            die 19 "fetching the model weights failed (python -m bootstrap fetch-models exited $_rc; its reason is above): fix that cause and restart, or set F5TTS_FETCH_MODELS=0 to start without them."
    fi
    release_lease
}

# Who runs what, so `bootstrap gc` keeps this prefix; $$ is the handler's pid after
# exec, and the handler refreshes the record's mtime while it runs. Also written
# before the models step, which can wait long and runs fetch-models from the prefix
# while another image's builder may run gc; rewritten at exec (a fresh mtime).
register_in_use() {
    [ -d "$ENVS/.in-use/$ENV_ID" ] || mkdir -p "$ENVS/.in-use/$ENV_ID"
    F5TTS_IN_USE_RECORD=$ENVS/.in-use/$ENV_ID/$HOST-$$
    printf '{"env_id": "%s", "host": "%s", "pid": %s}\n' "$ENV_ID" "$HOST" "$$" >"$F5TTS_IN_USE_RECORD"
}

start_handler() {
    set +eu
    # shellcheck disable=SC1091
    . "$PREFIX/.f5tts/activate.sh"
    set -eu
    register_in_use
    : "${HF_HUB_OFFLINE:=1}"
    PYTHONUNBUFFERED=1
    F5TTS_ENV_ID=$ENV_ID
    F5TTS_ENV_PREFIX=$PREFIX
    PYTHONPATH="$APP${PYTHONPATH:+:$PYTHONPATH}"
    export HF_HUB_OFFLINE PYTHONUNBUFFERED F5TTS_ENV_ID F5TTS_ENV_PREFIX F5TTS_IN_USE_RECORD PYTHONPATH
    clock
    fmt_s "$WAITED_CS"
    _waited=$FMT
    fmt_s $((NOW_CS - T0))
    log "ready: $START env=$ENV_ID waited=${_waited}s for=$WAITED_FOR downloaded=${DOWNLOADED_MB}MB linked=$LINKED total=${FMT}s"
    trap - EXIT INT TERM
    exec "$PREFIX/bin/python" -m "$F5TTS_HANDLER_MODULE" "$@"
}

# ---------------------------------------------------------------- main

clock
T0=$NOW_CS
require_number F5TTS_MIN_FREE_GB "$F5TTS_MIN_FREE_GB"
require_number F5TTS_LEASE_STALE_S "$F5TTS_LEASE_STALE_S"
require_number F5TTS_LEASE_HEARTBEAT_S "$F5TTS_LEASE_HEARTBEAT_S"
require_number F5TTS_LEASE_WAIT_MAX_S "$F5TTS_LEASE_WAIT_MAX_S"
require_number F5TTS_LEASE_POLL_MAX_S "$F5TTS_LEASE_POLL_MAX_S"
require_integer F5TTS_REALIZE_RETRIES "$F5TTS_REALIZE_RETRIES"
require_integer F5TTS_PROGRESS_S "$F5TTS_PROGRESS_S"
case $F5TTS_FETCH_MODELS in
0 | 1) ;;
*) die 20 "F5TTS_FETCH_MODELS=$F5TTS_FETCH_MODELS is neither 1 (fetch the weights at start) nor 0 (do not)." ;;
esac
to_cs "$F5TTS_LEASE_STALE_S"
LEASE_STALE_CS=$CS
to_cs "$F5TTS_LEASE_WAIT_MAX_S"
LEASE_WAIT_MAX_CS=$CS
to_cs "$F5TTS_LEASE_POLL_MAX_S"
LEASE_POLL_MAX_CS=$CS
[ "$LEASE_POLL_MAX_CS" -ge 10 ] || LEASE_POLL_MAX_CS=10
LEASE_HEARTBEAT_S=$F5TTS_LEASE_HEARTBEAT_S
to_cs "$F5TTS_LEASE_HEARTBEAT_S"
# A holder beating slower than half the stale time would be taken over while alive.
if [ "$CS" -lt 1 ] || [ $((CS * 2)) -gt "$LEASE_STALE_CS" ]; then
    die 20 "F5TTS_LEASE_HEARTBEAT_S=$F5TTS_LEASE_HEARTBEAT_S must be above 0 and at most half of F5TTS_LEASE_STALE_S=$F5TTS_LEASE_STALE_S, or a live builder would look dead; fix one of them."
fi
PROGRESS_CS=$((F5TTS_PROGRESS_S * 100))
[ "$F5TTS_REALIZE_RETRIES" -ge 1 ] || F5TTS_REALIZE_RETRIES=1
{ read -r HOST </proc/sys/kernel/hostname; } 2>/dev/null || HOST=$(uname -n)
SETSID=
! command -v setsid >/dev/null 2>&1 || SETSID=setsid

trap on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

phase check_volume
# A checkout (no env-id, the lock command at hand) that has no lock yet.
if [ ! -f "$APP/bootstrap/env-id" ] && [ ! -f "$F5TTS_LOCKFILE" ] &&
    [ "$F5TTS_LOCKFILE" = "$APP/conda-lock.yml" ] && [ -x "$APP/bootstrap/lock" ]; then
    phase make_missing_lock
fi
phase compute_env_id
# Not `env_ready || build_env`: set -e does not apply inside the right side of ||.
if ! env_ready; then build_env; fi
repair_active_link
phase ensure_models
start_handler "$@"
