# Shared helpers for scripts/services/*.sh (sourced, not run).
# shellcheck shell=bash

SVC_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SVC_SCRIPTS/../.." && pwd)"
# created on demand by `up` (so `env` and `status` leave no trace)
SERVICES_DIR="$(realpath -m "${CHAINGRAPH_SERVICES_DIR:-$REPO_ROOT/var/services}")"

# shellcheck disable=SC2034  # used by postgres.sh, kafka.sh and services.sh
PG_HOST=127.0.0.1
PG_PORT=5432
PG_DB=chaingraph
KAFKA_HOST=127.0.0.1
KAFKA_PORT=9092
# shellcheck disable=SC2034
KAFKA_CONTROLLER_PORT=9093

# shellcheck disable=SC2034
DATABASE_URL="postgresql://postgres@$PG_HOST:$PG_PORT/$PG_DB"
# shellcheck disable=SC2034
KAFKA_BROKERS="$KAFKA_HOST:$KAFKA_PORT"

export DEBIAN_FRONTEND=noninteractive
_SVC_T0=${_SVC_T0:-$(date +%s%N)}
_SVC_APT_UPDATED=${_SVC_APT_UPDATED:-0}

# Progress lines go to stderr so that `up`'s stdout ends with exactly the two env lines.
say() {
    local ms=$(( ($(date +%s%N) - _SVC_T0) / 1000000 ))
    printf '[services %3d.%01ds] %s\n' $((ms / 1000)) $(((ms % 1000) / 100)) "$*" >&2
}

# die MESSAGE [LOGFILE]: print the log's first error lines and its tail (if a log is given), then
# one ERROR line (with the first exception/error message of the log appended), and exit 1.
die() {
    local msg="$1" log="${2:-}" hint=""
    if [ -n "$log" ] && [ -s "$log" ]; then
        if grep -qE '(ERROR|FATAL|PANIC)[]:]? |Exception: |Error: ' "$log"; then
            echo "---- first errors in $log ----" >&2
            grep -E '(ERROR|FATAL|PANIC)[]:]? |Exception: |Error: |^Caused by: ' "$log" | head -n 12 | cut -c1-300 | sed 's/^/  | /' >&2
            hint="$(grep -m1 -E 'Exception: |Error: ' "$log" || grep -m1 -E '(ERROR|FATAL|PANIC)[]:]? ' "$log" || true)"
            hint="$(printf '%s' "$hint" | cut -c1-200)"
        fi
        echo "---- last 10 lines of $log ----" >&2
        tail -n 10 "$log" | cut -c1-300 | sed 's/^/  | /' >&2
        echo "----" >&2
    fi
    echo "services.sh: ERROR: $msg${hint:+ -- $hint}${log:+ (log: $log)}" >&2
    exit 1
}

# port_open HOST PORT: true if a TCP connect succeeds (bash /dev/tcp, no extra tools).
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# apt_install PKG...: install Debian packages; `apt-get update` runs once per invocation.
apt_install() {
    [ "$(id -u)" = 0 ] || die "need Debian packages ($*) but not running as root; install them: apt-get install $*"
    mkdir -p "$SERVICES_DIR"
    if [ "$_SVC_APT_UPDATED" != 1 ]; then
        say "apt-get update"
        apt-get update -qq >"$SERVICES_DIR/apt.log" 2>&1 || die "apt-get update failed" "$SERVICES_DIR/apt.log"
        _SVC_APT_UPDATED=1
    fi
    say "apt-get install $*"
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" \
        >>"$SERVICES_DIR/apt.log" 2>&1 || die "apt-get install $* failed" "$SERVICES_DIR/apt.log"
}

# pid_alive PID: the process exists and is not a zombie. A daemon that exits after its parent
# shell is gone stays a zombie until PID 1 reaps it, and kill -0 still succeeds on a zombie.
pid_alive() {
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# pid_matches PID PATTERN: the process is alive and its command line contains PATTERN
# (guards against a recycled pid in a stale pid file).
pid_matches() {
    local pid="$1" pat="$2"
    [ -n "$pid" ] && pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pat"
}
