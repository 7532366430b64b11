#!/usr/bin/env bash
# Make a Docker engine available on this machine, for the grader's sandbox.
#
#   bash scripts/install-docker.sh
#
# Idempotent: installs Debian's docker.io when `dockerd` is missing (and
# debootstrap, with which the sandbox's base image is made offline), starts
# `dockerd` when `docker info` fails (systemd when it runs, else dockerd in the
# background logging to $DOCKERD_LOG), and waits until the engine answers.
# Settings (environment):
#   DOCKERD_LOG      where a dockerd started here logs   (default /var/log/dockerd.log)
#   DOCKERD_FLAGS    extra dockerd flags; when set, only these are tried
#   DOCKER_WAIT_S    seconds to wait for each start attempt (default 30)
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKER_WAIT_S="${DOCKER_WAIT_S:-30}"
PIDFILE=/var/run/docker.pid

say() { echo "install-docker: $*"; }
die() {
    echo "install-docker: error: $1" >&2
    [ -n "${2:-}" ] && echo "install-docker: hint: $2" >&2
    exit 1
}

engine_ready() { docker info >/dev/null 2>&1; }

wait_ready() {  # wait_ready SECONDS [PID]: 0 once the engine answers
    local deadline=$((SECONDS + $1)) pid="${2:-}"
    while [ "$SECONDS" -lt "$deadline" ]; do
        engine_ready && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1  # dockerd exited
        fi
        sleep 0.5
    done
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "this step needs root: $*" "run this script as root (or install sudo)"
    fi
}

install_packages() {
    # dockerd from docker.io; debootstrap makes the sandbox's base image offline.
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 \
        || die "missing: ${missing[*]}, and apt-get is not available" \
               "install Docker Engine (and debootstrap) for your system: https://docs.docker.com/engine/install/"
    say "installing Debian's ${missing[*]} (apt-get)..."
    as_root apt-get update -q >/dev/null \
        || die "apt-get update failed" "check that the Debian mirror in /etc/apt/sources.list* is reachable"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
        || die "apt-get install ${missing[*]} failed" "run: apt-get install -y ${missing[*]}  (and read its output)"
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH" "look for it in /usr/sbin"
}

start_with_systemd() {
    [ -d /run/systemd/system ] || return 1
    say "starting docker with systemctl..."
    as_root systemctl start docker >/dev/null 2>&1 || return 1
    wait_ready "$DOCKER_WAIT_S"
}

clear_stale_pidfile() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        return 0
    fi
    as_root rm -f "$PIDFILE"
}

start_dockerd() {  # start_dockerd FLAGS...: background dockerd; 0 once ready
    clear_stale_pidfile
    say "starting dockerd ${*:-(default flags)}; log: $DOCKERD_LOG"
    as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid: the engine outlives this script and the shell that ran it;
    # sh -c: the log is opened as root too.
    as_root sh -c 'log="$1"; shift; exec setsid nohup dockerd "$@" >>"$log" 2>&1 </dev/null' \
        sh "$DOCKERD_LOG" "$@" &
    sleep 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if wait_ready "$DOCKER_WAIT_S" "$pid"; then
        return 0
    fi
    say "dockerd ${*:-(default flags)} did not become ready; last log lines:"
    tail -n 5 "$DOCKERD_LOG" | sed 's/^/    /' >&2 || true
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        as_root kill "$pid" 2>/dev/null || true
        sleep 2
    fi
    return 1
}

start_engine() {
    if pgrep -x dockerd >/dev/null 2>&1; then
        say "a dockerd process runs already; waiting for it to answer..."
        wait_ready "$DOCKER_WAIT_S" && return 0
        die "dockerd runs but 'docker info' fails" \
            "read $DOCKERD_LOG (or 'journalctl -u docker'), stop that dockerd, then run this script again"
    fi
    start_with_systemd && return 0
    if [ -n "${DOCKERD_FLAGS:-}" ]; then
        # shellcheck disable=SC2086  # flags are words on purpose
        start_dockerd $DOCKERD_FLAGS && return 0
    else
        # The defaults (overlay2, iptables) first; then fall back for machines
        # (containers, VMs) without iptables or overlayfs. Sandboxes use
        # --network none, so no bridge NAT is needed.
        start_dockerd && return 0
        start_dockerd --iptables=false --ip6tables=false && return 0
        start_dockerd --iptables=false --ip6tables=false --storage-driver=vfs && return 0
    fi
    die "could not start dockerd" "read $DOCKERD_LOG; set DOCKERD_FLAGS to flags that work on this machine"
}

main() {
    if command -v docker >/dev/null 2>&1 && engine_ready; then
        install_packages
        say "Docker engine is running ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] && [ -S /var/run/docker.sock ] && as_root docker info >/dev/null 2>&1; then
        die "the Docker engine runs, but user '$(id -un)' may not use it" \
            "sudo usermod -aG docker $(id -un)  (then log in again)"
    fi
    install_packages
    start_engine
    say "Docker engine is running ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

main "$@"
