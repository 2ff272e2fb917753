#!/usr/bin/env bash
# Make sure a Docker Engine answers on its unix socket; start dockerd if none does.
#
# Idempotent: when a daemon already answers (systemd's, or one this script
# started earlier) it only says so. Otherwise it starts `dockerd` in the
# background (as root, detached with setsid so a test runner's process-group
# kill does not take it down), waits a bounded time for the socket to answer,
# and exits non-zero with the daemon's log tail when it does not.
#
# Nothing here pulls from a registry: images are imported from local tarballs
# (see src/faas/images/docker_image.py).
#
# Environment (all optional):
#   DOCKER_SOCK            socket path              (default /var/run/docker.sock)
#   FAAS_DOCKERD_DIR       log, pidfile and lock    (default /var/run/faas-dockerd)
#   FAAS_DOCKERD_WAIT_S    bounded wait, seconds    (default 60)
#   FAAS_DOCKERD_ARGS      extra dockerd arguments, whitespace-separated
#
# When gVisor's `runsc` is installed (Debian package `runsc`), a daemon started
# here registers it as the OCI runtime "runsc" (DockerExecutor(runtime="runsc"))
# with `--network=none` (gVisor's own empty netstack: the platform never gives
# containers a network, and runsc refuses Docker's "none" namespace here).
# That needs a daemon config file, so it is done only when
# /etc/docker/daemon.json does not exist; a daemon started elsewhere needs
# the same entry in its own daemon.json "runtimes".
set -euo pipefail

SOCK="${DOCKER_SOCK:-/var/run/docker.sock}"
STATE_DIR="${FAAS_DOCKERD_DIR:-/var/run/faas-dockerd}"
WAIT_S="${FAAS_DOCKERD_WAIT_S:-60}"
LOG="$STATE_DIR/dockerd.log"
PIDFILE="$STATE_DIR/dockerd.pid"
LOCK="$STATE_DIR/lock"

say() { printf 'ensure-dockerd: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

answers() {
    # True when the Engine API answers /_ping on the socket.
    [ -S "$SOCK" ] || return 1
    if command -v curl >/dev/null 2>&1; then
        [ "$(curl -fsS --max-time 3 --unix-socket "$SOCK" http://docker/_ping 2>/dev/null)" = "OK" ]
    else
        DOCKER_HOST="unix://$SOCK" timeout 5 docker version >/dev/null 2>&1
    fi
}

if answers; then
    say "a Docker daemon already answers at $SOCK"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n --preserve-env=DOCKER_SOCK,FAAS_DOCKERD_DIR,FAAS_DOCKERD_WAIT_S,FAAS_DOCKERD_ARGS "$0" "$@"
    fi
    die "no daemon at $SOCK and starting dockerd needs root (run as root, or give passwordless sudo)"
fi

command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed: apt-get install docker.io"

mkdir -p "$STATE_DIR"
exec 9>"$LOCK"
# Serialise concurrent callers (parallel test sessions): the second one waits
# here, then finds the daemon answering.
flock -w "$WAIT_S" 9 || die "timed out waiting for another ensure-dockerd.sh to finish"

if answers; then
    say "a Docker daemon already answers at $SOCK"
    exit 0
fi

# Alive means running: a killed dockerd can linger as a zombie until init reaps it.
running() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
pid_alive() { [ -s "$PIDFILE" ] && running "$(cat "$PIDFILE")"; }

start_dockerd() {
    # $@: extra dockerd arguments. Returns 0 once the socket answers.
    local extra=()
    local runsc
    runsc="$(command -v runsc 2>/dev/null || true)"
    if [ -n "$runsc" ] && [ ! -e /etc/docker/daemon.json ]; then
        printf '{"runtimes": {"runsc": {"path": "%s", "runtimeArgs": ["--network=none"]}}}\n' \
            "$runsc" >"$STATE_DIR/daemon.json"
        extra+=("--config-file" "$STATE_DIR/daemon.json")
    fi
    if [ -n "${FAAS_DOCKERD_ARGS:-}" ]; then
        local user_args=()
        read -r -a user_args <<<"$FAAS_DOCKERD_ARGS"
        extra+=("${user_args[@]}")
    fi
    say "starting dockerd $* ${extra[*]:-} (log: $LOG)"
    printf '\n==== %s ensure-dockerd: dockerd %s %s\n' "$(date -u +%FT%TZ)" "$*" "${extra[*]:-}" >>"$LOG"
    setsid nohup dockerd --host "unix://$SOCK" --pidfile "$PIDFILE" "$@" "${extra[@]}" \
        </dev/null >>"$LOG" 2>&1 9>&- &
    local pid=$! waited=0
    while [ "$waited" -lt $((WAIT_S * 10)) ]; do
        if answers; then
            say "dockerd (pid $pid) answers at $SOCK after $((waited / 10)).$((waited % 10))s"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "dockerd exited during start-up; last log lines:"
            tail -n 15 "$LOG" >&2 || true
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "dockerd (pid $pid) did not answer within ${WAIT_S}s; stopping it. Last log lines:"
    tail -n 15 "$LOG" >&2 || true
    kill "$pid" 2>/dev/null || true
    return 1
}

if pid_alive; then
    # Started by an earlier run but not answering yet (or wedged): wait for it.
    pid="$(cat "$PIDFILE")"
    say "dockerd pid $pid from $PIDFILE is alive; waiting for it to answer"
    for _ in $(seq 1 $((WAIT_S * 10))); do
        answers && { say "dockerd (pid $pid) answers at $SOCK"; exit 0; }
        running "$pid" || break
        sleep 0.1
    done
    running "$pid" && die "dockerd pid $pid is alive but does not answer at $SOCK; see $LOG"
    say "dockerd pid $pid exited; starting a new one"
fi
rm -f "$PIDFILE"

if start_dockerd; then
    exit 0
fi
# Hosts without working iptables/bridge support kill dockerd while it sets up
# the default bridge. The platform only ever uses --network none, so retry
# without the bridge and iptables rules.
if start_dockerd --bridge=none --iptables=false --ip6tables=false; then
    say "note: started without the default bridge network (only --network none works)"
    exit 0
fi
die "could not start dockerd; see $LOG"
