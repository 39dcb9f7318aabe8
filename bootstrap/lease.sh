# shellcheck shell=sh
# The lease: a lock that works across machines sharing the network volume.
# Sourced by bootstrap/entrypoint.sh; the protocol is in docs/architecture.md.
#
# fcntl locks are not trusted on MooseFS, so the lock is a directory made with
# `mkdir` (atomic everywhere). The holder keeps rewriting `heartbeat`; a waiter calls
# a lease stale only when that content has not changed for F5TTS_LEASE_STALE_S by
# its *own* clock, so no two machines' clocks are ever compared. Taking over a stale
# lease first wins `mkdir <lease>.takeover.<token>`, so one waiter replaces a given
# dead holder, and it re-reads the owner before it does.
#
# Needs from the caller: LEASES_DIR, HOST, LEASE_STALE_CS, LEASE_HEARTBEAT_S,
# LEASE_WAIT_MAX_CS, LEASE_POLL_MAX_CS (centiseconds where named _CS) and the
# functions clock (sets NOW_CS), fmt_s (sets FMT), log, die and run_child (runs a
# command so that a SIGTERM's trap need not wait for it).

: "${LEASES_DIR:?lease.sh needs LEASES_DIR}"
LEASE_NAME=
LEASE_DIR=
LEASE_TOKEN=
LEASE_HEARTBEAT_PID=
# What the last acquire_lease waited, and for whom ("-" when it did not wait);
# read by the entrypoint.
# shellcheck disable=SC2034
LEASE_WAITED_CS=0
LEASE_WAITED_FOR=-
# Set by the caller before acquire_lease: how long the holder's work takes in all,
# and where that figure comes from; waiters log the time left (lease_progress_note).
LEASE_EXPECTED_S=
LEASE_EXPECTED_FROM=
# When this worker took its lease (centiseconds, its own clock), for lease_progress.
LEASE_TAKEN_CS=0

# Sets OWNER_HOST, OWNER_PID, OWNER_TOKEN from <lease>/owner (empty when unreadable:
# a holder between its mkdir and its first write, or a lease being removed).
lease_read_owner() {
    OWNER_HOST=
    OWNER_PID=
    OWNER_TOKEN=
    { [ -f "$1/owner" ] && while IFS='=' read -r _key _value; do
        case $_key in
        host) OWNER_HOST=$_value ;;
        pid) OWNER_PID=$_value ;;
        token) OWNER_TOKEN=$_value ;;
        esac
    done <"$1/owner"; } 2>/dev/null || :
}

# Sets HEARTBEAT to the content of <lease>/heartbeat (empty when unreadable).
lease_read_heartbeat() {
    HEARTBEAT=
    { [ -f "$1/heartbeat" ] && read -r HEARTBEAT <"$1/heartbeat"; } 2>/dev/null || :
}

lease_new_token() {
    od -An -N8 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n' || :
}

# Runs in the background while the lease is held. It stops by itself when the
# entrypoint is gone (a killed builder must leave a lease that goes stale) or when
# the lease is no longer ours (taken over after we stalled), so it never writes a
# heartbeat into another holder's lease.
lease_heartbeat_loop() {
    _hb_dir=$1
    _hb_token=$2
    _hb_parent=$3
    _hb_count=0
    # The sleep is waited for in the background so that release_lease's TERM ends it
    # with the loop: a stopped worker leaves no process behind.
    trap 'kill "$_hb_sleep" 2>/dev/null; exit 0' TERM
    while :; do
        sleep "$LEASE_HEARTBEAT_S" &
        _hb_sleep=$!
        wait "$_hb_sleep" || exit 0
        kill -0 "$_hb_parent" 2>/dev/null || exit 0
        lease_read_owner "$_hb_dir"
        [ "$OWNER_TOKEN" = "$_hb_token" ] || exit 0
        _hb_count=$((_hb_count + 1))
        # Written aside and renamed so a waiter never reads half a line.
        printf '%s %s\n' "$_hb_token" "$_hb_count" >"$_hb_dir/.heartbeat.$_hb_token" &&
            mv -f "$_hb_dir/.heartbeat.$_hb_token" "$_hb_dir/heartbeat" || exit 0
    done
}

# lease_progress PHASE: the holder notes in its lease which step it is at and how far
# into its work (seconds by its own clock): waiters on other machines read a duration,
# never a time of day. A plain write: a waiter that reads half a line shows no estimate.
lease_progress() {
    [ -n "$LEASE_DIR" ] || return 0
    printf '%s %s\n' "$1" "$(((NOW_CS - LEASE_TAKEN_CS) / 100))" >"$LEASE_DIR/progress" 2>/dev/null || :
}

# Sets PROGRESS_NOTE for a waiter's log line from <lease>/progress, which the holder
# rewrote $2 centiseconds ago or earlier (content $1 first seen then, by our clock).
lease_progress_note() {
    PROGRESS_NOTE=
    _pn_phase=${1% *}
    _pn_done=${1##* }
    case $_pn_done in '' | *[!0-9]*) return 0 ;; esac
    [ -n "$LEASE_EXPECTED_S" ] || return 0
    _pn_done=$((_pn_done + $2 / 100))
    if [ "$_pn_done" -lt "$LEASE_EXPECTED_S" ]; then
        PROGRESS_NOTE="; it is at $_pn_phase, ${_pn_done} s in: about $((LEASE_EXPECTED_S - _pn_done)) s left ($LEASE_EXPECTED_FROM ${LEASE_EXPECTED_S} s)"
    else
        PROGRESS_NOTE="; it is at $_pn_phase, ${_pn_done} s in: longer than expected ($LEASE_EXPECTED_FROM ${LEASE_EXPECTED_S} s)"
    fi
}

# Replaces the stale lease $1 whose owner token was $2 and heartbeat $3.
# Returns 0 when the lease is gone (taken over by us), 1 when another waiter won
# or the holder turned out to be alive; CLAIM_BUSY=1 when another waiter's claim
# for this token was in the way.
lease_take_over() {
    _to_dir=$1
    _to_token=${2:-none}
    _to_heartbeat=$3
    _to_claim="$_to_dir.takeover.$_to_token"
    CLAIM_BUSY=1
    mkdir "$_to_claim" 2>/dev/null || return 1
    CLAIM_BUSY=0
    lease_read_owner "$_to_dir"
    lease_read_heartbeat "$_to_dir"
    _to_result=1
    if [ "${OWNER_TOKEN:-none}" = "$_to_token" ] && [ "$HEARTBEAT" = "$_to_heartbeat" ] &&
        mv -T "$_to_dir" "$LEASES_DIR/.dead.${_to_dir##*/}.$_to_token" 2>/dev/null; then
        rm -rf "$LEASES_DIR/.dead.${_to_dir##*/}.$_to_token"
        _to_result=0
    fi
    # Safe to drop: tokens are unique, and a late waiter that claims this token
    # again finds another owner (or none) and backs off.
    rmdir "$_to_claim" 2>/dev/null || :
    return "$_to_result"
}

# acquire_lease NAME [DONE_CHECK]: returns holding envs/.leases/NAME (LEASE_DIR set),
# or, when the command DONE_CHECK succeeds while waiting (the holder finished the
# work), returns without it (LEASE_DIR empty): waiters then need not queue for the
# lease one by one. Dies with exit 17 after F5TTS_LEASE_WAIT_MAX_S. Polls with a
# backoff up to LEASE_POLL_MAX_CS and logs every ~10 s who it is waiting for.
acquire_lease() {
    _aq_name=$1
    _aq_done=${2:-}
    _aq_dir="$LEASES_DIR/$_aq_name"
    [ -d "$LEASES_DIR" ] || mkdir -p "$LEASES_DIR"
    clock
    _aq_start=$NOW_CS
    _aq_next_log=$NOW_CS
    _aq_progress=
    _aq_progress_at=$NOW_CS
    _aq_delay=10
    _aq_seen=
    _aq_seen_at=$NOW_CS
    _aq_first=1
    _aq_blocked_by=
    LEASE_WAITED_CS=0
    LEASE_WAITED_FOR=-
    while :; do
        if mkdir "$_aq_dir" 2>/dev/null; then
            LEASE_TOKEN=$(lease_new_token)
            [ -n "$LEASE_TOKEN" ] || LEASE_TOKEN="$HOST-$$-$NOW_CS"
            printf 'host=%s\npid=%s\ntoken=%s\n' "$HOST" "$$" "$LEASE_TOKEN" >"$_aq_dir/owner"
            printf '%s 0\n' "$LEASE_TOKEN" >"$_aq_dir/heartbeat"
            LEASE_NAME=$_aq_name
            LEASE_DIR=$_aq_dir
            LEASE_TAKEN_CS=$NOW_CS
            # No inherited stdout/stderr: an orphaned `sleep` must not hold the
            # caller's pipes open after the lease is released.
            lease_heartbeat_loop "$_aq_dir" "$LEASE_TOKEN" "$$" </dev/null >/dev/null 2>&1 &
            LEASE_HEARTBEAT_PID=$!
            clock
            # shellcheck disable=SC2034
            LEASE_WAITED_CS=$((NOW_CS - _aq_start))
            return 0
        fi
        lease_read_owner "$_aq_dir"
        lease_read_heartbeat "$_aq_dir"
        clock
        # shellcheck disable=SC2034
        [ -z "$OWNER_HOST" ] || LEASE_WAITED_FOR="$OWNER_HOST:$OWNER_PID"
        if [ -n "$_aq_first" ] || [ "$HEARTBEAT" != "$_aq_seen" ]; then
            _aq_first=
            _aq_seen=$HEARTBEAT
            _aq_seen_at=$NOW_CS
        elif [ $((NOW_CS - _aq_seen_at)) -ge "$LEASE_STALE_CS" ]; then
            fmt_s $((NOW_CS - _aq_seen_at))
            if lease_take_over "$_aq_dir" "$OWNER_TOKEN" "$HEARTBEAT"; then
                log "took over the $_aq_name lease of host ${OWNER_HOST:-?} pid ${OWNER_PID:-?}: its heartbeat had not changed for ${FMT}s"
            elif [ "$CLAIM_BUSY" = 1 ] && [ "$_aq_blocked_by" = "${OWNER_TOKEN:-none}" ]; then
                # A takeover takes milliseconds; a claim still there a whole stale
                # period later belongs to a waiter that died in the middle of it.
                log "removing the takeover claim of the $_aq_name lease left by a waiter that died"
                rmdir "$_aq_dir.takeover.${OWNER_TOKEN:-none}" 2>/dev/null || :
            fi
            _aq_blocked_by=
            [ "$CLAIM_BUSY" = 0 ] || _aq_blocked_by=${OWNER_TOKEN:-none}
            _aq_first=1
            continue
        fi
        if [ -n "$_aq_done" ] && "$_aq_done"; then
            clock
            # shellcheck disable=SC2034
            LEASE_WAITED_CS=$((NOW_CS - _aq_start))
            return 0
        fi
        if [ $((NOW_CS - _aq_start)) -ge "$LEASE_WAIT_MAX_CS" ]; then
            fmt_s $((NOW_CS - _aq_start))
            die 17 "gave up waiting for the $_aq_name lease after ${FMT}s: host ${OWNER_HOST:-?} pid ${OWNER_PID:-?} holds it and is still heartbeating; read that worker's log, or raise F5TTS_LEASE_WAIT_MAX_S if its build is just slow."
        fi
        _aq_now_progress=
        { [ -f "$_aq_dir/progress" ] && read -r _aq_now_progress <"$_aq_dir/progress"; } 2>/dev/null || :
        if [ "$_aq_now_progress" != "$_aq_progress" ]; then
            _aq_progress=$_aq_now_progress
            _aq_progress_at=$NOW_CS
        fi
        # At once (who it waits for, once the owner file is written), then every ~10 s.
        if [ "$NOW_CS" -ge "$_aq_next_log" ] && [ -n "$OWNER_HOST" ]; then
            lease_progress_note "$_aq_progress" $((NOW_CS - _aq_progress_at))
            log "waiting for $_aq_name lease held by host $OWNER_HOST pid ${OWNER_PID:-?} for $(((NOW_CS - _aq_start) / 100)) s$PROGRESS_NOTE"
            _aq_next_log=$((NOW_CS + 1000))
        fi
        run_child sleep "$((_aq_delay / 100)).$((_aq_delay % 100 / 10))$((_aq_delay % 10))"
        _aq_delay=$((_aq_delay * 2))
        [ "$_aq_delay" -le "$LEASE_POLL_MAX_CS" ] || _aq_delay=$LEASE_POLL_MAX_CS
    done
}

# lease_still_ours: true while the lease we took still names our token. A builder
# whose heartbeat stopped for F5TTS_LEASE_STALE_S (a stalled volume) may have been
# taken over while it was alive; it must then stop before it marks or publishes.
lease_still_ours() {
    [ -n "$LEASE_DIR" ] || return 1
    lease_read_owner "$LEASE_DIR"
    [ "$OWNER_TOKEN" = "$LEASE_TOKEN" ]
}

# release_lease: removes the lease if it is still ours and stops the heartbeat.
# Safe to call when nothing is held (the entrypoint's exit trap does).
release_lease() {
    [ -n "$LEASE_DIR" ] || return 0
    lease_read_owner "$LEASE_DIR"
    # Renamed away first so waiters see the lease vanish at once, not half-deleted;
    # the dot name keeps a leftover of an interrupted rm from looking like a lease.
    if [ "$OWNER_TOKEN" = "$LEASE_TOKEN" ] &&
        mv -T "$LEASE_DIR" "$LEASES_DIR/.released.$LEASE_NAME.$LEASE_TOKEN" 2>/dev/null; then
        rm -rf "$LEASES_DIR/.released.$LEASE_NAME.$LEASE_TOKEN"
    fi
    # No `wait`: a TERM sent right after the fork can be lost, and the loop stops
    # by itself within one beat anyway, once the lease is no longer ours.
    [ -z "$LEASE_HEARTBEAT_PID" ] || kill "$LEASE_HEARTBEAT_PID" 2>/dev/null || :
    LEASE_NAME=
    LEASE_DIR=
    LEASE_TOKEN=
    LEASE_HEARTBEAT_PID=
}
