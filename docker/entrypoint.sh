#!/usr/bin/env bash
# chaingraph-gw entrypoint: nginx in front of INSTANCES gateway processes plus WORKERS worker processes,
# all under supervisord, configured from the environment. The same script is the container's ENTRYPOINT
# and runs directly on a host (that is how the tests run it).
#
#   entrypoint.sh [serve]     validate the environment, generate the nginx + supervisord configs under
#                             PREFIX, run `chaingraph-gw migrate` (distributed mode), then
#                             `exec supervisord -n` (foreground; SIGTERM stops everything gracefully)
#   entrypoint.sh render      validate + generate the configs, print their paths, exit
#   entrypoint.sh check       render, then `nginx -t` and supervisor's own parser on the results
#   entrypoint.sh fatal-listener   (internal) supervisord event listener for PROCESS_STATE_FATAL
#   entrypoint.sh CMD ARGS... anything else is exec'd as is (e.g. `chaingraph-gw token ...`, `bash`)
#
# Environment (see docker/README-deployment.md for the full table):
#   INSTANCES (4, 1..64)   gateway processes (role api) on PORT, PORT+1, ...
#   WORKERS (2, 0..64)     worker processes (role worker) on WORKER_PORT, WORKER_PORT+1, ... (/health etc.)
#   PORT (4021)  WORKER_PORT (PORT+100)  NGINX_PORT (80)  HOST (127.0.0.1: where the processes listen)
#   EXECUTION_MODE         distributed | local; default distributed when DATABASE_URL is set, else local.
#                          local = the embedded single-process default (its own SQLite): INSTANCES is forced
#                          to 1 and WORKERS to 0 (with a warning), the one process has role "all".
#   DATABASE_URL, KAFKA_BROKERS   required in distributed mode
#   AUTH_ENABLED (true)  AUTH_JWT_SECRET (required when AUTH_ENABLED is true)
#   LB_METHOD (ip_hash | least_conn | hash | round_robin)  LB_HASH_KEY ($binary_remote_addr, for hash)
#   MAX_MEMORY (1GB)       memmon restarts a gateway/worker above this RSS (512M, 1G, 1GB, bytes...)
#   LOG_TO_STDOUT (0; 1 in the image)   1: every log to stdout; 0: rotated files under PREFIX/var/log
#   PREFIX (/ in the image) where generated configs, logs, sockets, pid files and state go:
#          PREFIX/etc/chaingraph, PREFIX/run/chaingraph, PREFIX/var/log/chaingraph, PREFIX/var/lib/chaingraph
set -Eeuo pipefail
shopt -u patsub_replacement 2>/dev/null || true

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"
NAME="entrypoint"
MODE_CMD=serve

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$NAME" "$*" >&2; }
warn() { log "warning: $*"; }
die() {
    printf '%s: error: %s\n' "$NAME" "$*" >&2
    exit 78 # EX_CONFIG
}

# ------------------------------------------------------------------------------------------------------
# fatal-listener: supervisord event listener protocol on stdin/stdout (logs go to stderr).
fatal_listener() {
    export LC_ALL=C # read -N counts bytes
    local header len payload
    while :; do
        printf 'READY\n'
        IFS= read -r header || exit 0
        len="${header##*len:}"
        len="${len%% *}"
        payload=""
        if [[ "$len" =~ ^[0-9]+$ ]] && ((len > 0)); then
            IFS= read -r -N "$len" payload || true
        fi
        printf 'RESULT 2\nOK'
        case "${EXIT_ON_FATAL:-1}" in
        1 | true | yes | on)
            log "a process is FATAL ($payload): stopping supervisord so the container exits (EXIT_ON_FATAL=1)"
            kill -TERM "$PPID" 2>/dev/null || true
            ;;
        *)
            log "a process is FATAL ($payload); EXIT_ON_FATAL=0: carrying on without it"
            ;;
        esac
    done
}

# ------------------------------------------------------------------------------------------------------
# Validation helpers: every problem is collected, then reported together with a non-zero exit.
ERRORS=()
err() { ERRORS+=("$*"); }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# int_var NAME DEFAULT MIN MAX
int_var() {
    local name="$1" def="$2" min="$3" max="$4" v
    v="${!name:-$def}"
    if ! is_uint "$v"; then
        err "$name must be a whole number between $min and $max, got \"$v\""
        printf -v "$name" '%s' "$def"
    elif ((10#$v < min || 10#$v > max)); then
        err "$name must be between $min and $max, got $v"
        printf -v "$name" '%s' "$def"
    else
        printf -v "$name" '%s' "$((10#$v))"
    fi
}

# bool_var NAME DEFAULT -> NAME becomes true|false
bool_var() {
    local name="$1" def="$2" v
    v="${!name:-$def}"
    case "${v,,}" in
    1 | true | yes | on) printf -v "$name" true ;;
    0 | false | no | off) printf -v "$name" false ;;
    *)
        err "$name must be true or false (also 1/0, yes/no, on/off), got \"$v\""
        printf -v "$name" '%s' "$def"
        ;;
    esac
}

# enum_var NAME DEFAULT CHOICES...
enum_var() {
    local name="$1" def="$2" v c
    shift 2
    v="${!name:-$def}"
    for c in "$@"; do
        if [[ "${v,,}" == "$c" ]]; then
            printf -v "$name" '%s' "$c"
            return 0
        fi
    done
    err "$name must be one of: $* (got \"$v\")"
    printf -v "$name" '%s' "$def"
}

# MAX_MEMORY: 1GB, 1G, 512MB, 512M, 1024KB, 1048576 (bytes) -> memmon byte_size (KB/MB/GB or bytes)
parse_memory() {
    local v="${1^^}" n unit
    v="${v// /}"
    if [[ "$v" =~ ^([0-9]+)(B|K|KB|KIB|M|MB|MIB|G|GB|GIB)?$ ]]; then
        n="${BASH_REMATCH[1]}"
        unit="${BASH_REMATCH[2]}"
        ((10#$n > 0)) || return 1
        case "$unit" in
        "" | B) printf '%s' "$((10#$n))" ;;
        K*) printf '%sKB' "$((10#$n))" ;;
        M*) printf '%sMB' "$((10#$n))" ;;
        G*) printf '%sGB' "$((10#$n))" ;;
        esac
        return 0
    fi
    return 1
}

# Escape a value for supervisor's config (%-interpolation).
sv() { printf '%s' "${1//%/%%}"; }

# render TEMPLATE OUTPUT: replaces {{KEY}} with TPL[KEY]; fails on a placeholder left over.
declare -A TPL=()
render() {
    local template="$1" out="$2" content key left
    [[ -r "$template" ]] || die "template $template is missing (ROOT=$ROOT)"
    content="$(<"$template")"
    for key in "${!TPL[@]}"; do
        content="${content//"{{$key}}"/"${TPL[$key]}"}"
    done
    if [[ "$content" =~ \{\{([A-Z0-9_]+)\}\} ]]; then
        left="${BASH_REMATCH[1]}"
        die "template $template: placeholder {{$left}} has no value (entrypoint bug)"
    fi
    printf '%s\n' "$content" >"$out.tmp"
    mv -f "$out.tmp" "$out"
}

find_bin() { # find_bin NAME [fallback...] -> absolute path or empty
    local c
    for c in "$@"; do
        if [[ "$c" == */* ]]; then
            [[ -x "$c" ]] && { printf '%s' "$c"; return 0; }
        else
            c="$(command -v "$c" 2>/dev/null || true)"
            [[ -n "$c" ]] && { printf '%s' "$c"; return 0; }
        fi
    done
    return 1
}

# need_bin NAME HINT CANDIDATES... -> absolute path. Missing: an error, except for `render` (which only
# writes files): then the bare name is used and a warning printed.
need_bin() {
    local name="$1" hint="$2" found
    shift 2
    if found="$(find_bin "$@")"; then
        printf '%s' "$found"
    elif [[ "$MODE_CMD" == render ]]; then
        warn "$name not found ($hint); the generated config names it without a path"
        printf '%s' "$name"
    else
        die "$name not found ($hint)"
    fi
}

# ------------------------------------------------------------------------------------------------------
configure() {
    # --- where the programs are: VENV_BIN, else this checkout's .venv, else PATH (the image: /opt/venv/bin)
    if [[ -z "${VENV_BIN:-}" && -x "$ROOT/.venv/bin/twistd" ]]; then
        VENV_BIN="$ROOT/.venv/bin"
    fi
    if [[ -n "${VENV_BIN:-}" ]]; then
        [[ -d "$VENV_BIN" ]] || die "VENV_BIN=$VENV_BIN is not a directory"
        PATH="$VENV_BIN:$PATH"
        export PATH
    fi
    TWISTD_BIN="$(need_bin twistd "install chaingraph-gw, or set VENV_BIN" twistd)"
    CGW_BIN="$(need_bin chaingraph-gw "install chaingraph-gw, or set VENV_BIN" chaingraph-gw)"
    SUPERVISORD_BIN="$(need_bin supervisord "pip install supervisor superlance, or set VENV_BIN" supervisord)"
    local sv_dir
    sv_dir="$(dirname "$SUPERVISORD_BIN")"
    SUPERVISORCTL_BIN="$(need_bin supervisorctl "pip install supervisor" supervisorctl "$sv_dir/supervisorctl")"
    MEMMON_BIN="$(need_bin memmon "pip install superlance" memmon "$sv_dir/memmon")"
    NGINX_BIN="$(need_bin nginx "apt-get install nginx-light, or set NGINX_BIN" \
        "${NGINX_BIN:-nginx}" /usr/sbin/nginx /usr/local/sbin/nginx)"
    BASH_BIN="$(find_bin bash)"
    PYTHON_BIN="$(find_bin "$sv_dir/python3" python3)" || PYTHON_BIN=""

    # --- numbers
    int_var INSTANCES 4 1 64
    int_var WORKERS 2 0 64
    int_var PORT 4021 1 65535
    int_var NGINX_PORT 80 1 65535
    # shellcheck disable=SC2153 # PORT is set by int_var above
    local default_worker_port=$((PORT + 100))
    ((default_worker_port > 65535)) && default_worker_port=$((PORT - 100))
    int_var WORKER_PORT "$default_worker_port" 1 65535
    int_var MIN_UPTIME 10 0 3600
    int_var MAX_RESTARTS 10 0 1000
    int_var STOP_GRACE_SECONDS 10 1 3600
    int_var NGINX_WORKER_CONNECTIONS 16384 64 1048576
    int_var NGINX_MAX_FAILS 3 0 1000
    int_var NGINX_FAIL_TIMEOUT 5 1 3600
    int_var LOG_MAXBYTES_MB 50 1 100000
    int_var LOG_BACKUPS 5 0 1000
    int_var MIGRATE_TIMEOUT 60 0 3600
    enum_var MEMMON_TICK 60 5 60 3600

    # --- gateway settings the stack derives timeouts from (the gateway validates them again)
    local drain="${CHAINGRAPH_DRAIN_SECONDS:-10}"
    if [[ ! "$drain" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
        err "CHAINGRAPH_DRAIN_SECONDS must be a number of seconds >= 0, got \"$drain\""
        drain=10
    fi
    DRAIN_CEIL="${drain%%.*}"
    [[ "$drain" == *.* ]] && DRAIN_CEIL=$((10#$DRAIN_CEIL + 1))
    STOP_WAIT_SECS=$((10#$DRAIN_CEIL + STOP_GRACE_SECONDS))
    int_var CHAINGRAPH_KEEPALIVE_PING_MS 30000 100 86400000
    int_var CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS 10000 100 86400000
    bool_var CHAINGRAPH_KEEPALIVE_ENABLED true
    export CHAINGRAPH_KEEPALIVE_PING_MS CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS CHAINGRAPH_KEEPALIVE_ENABLED
    if [[ -n "${NGINX_WS_TIMEOUT:-}" ]]; then
        int_var NGINX_WS_TIMEOUT 3600 1 604800
    elif [[ "$CHAINGRAPH_KEEPALIVE_ENABLED" == true ]]; then
        # 4 keep-alive periods, at least ping + pong wait + 60 s: a live client always produces traffic
        # in both directions well within this; a dead one is dropped by the gateway first.
        local ping_s=$(((CHAINGRAPH_KEEPALIVE_PING_MS + 999) / 1000))
        local pong_s=$(((CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS + 999) / 1000))
        NGINX_WS_TIMEOUT=$((4 * ping_s))
        ((NGINX_WS_TIMEOUT < ping_s + pong_s + 60)) && NGINX_WS_TIMEOUT=$((ping_s + pong_s + 60))
    else
        NGINX_WS_TIMEOUT=3600 # no server keep-alive: only the client's pings keep a tunnel open
    fi

    # --- enums and booleans
    enum_var LB_METHOD ip_hash ip_hash least_conn hash round_robin
    LB_HASH_KEY="${LB_HASH_KEY:-\$binary_remote_addr}"
    [[ "$LB_HASH_KEY" =~ ^[][\$A-Za-z0-9_:.-]+$ ]] ||
        err "LB_HASH_KEY must be an nginx variable expression like \$binary_remote_addr, got \"$LB_HASH_KEY\""
    bool_var LOG_TO_STDOUT false
    bool_var EXIT_ON_FATAL true
    bool_var AUTH_ENABLED true
    export AUTH_ENABLED
    if [[ -n "${LOG_LEVEL:-}" ]]; then
        enum_var LOG_LEVEL info debug info warn warning error
        export LOG_LEVEL
    fi
    if [[ -n "${LOG_FORMAT:-}" ]]; then
        enum_var LOG_FORMAT text text json
        export LOG_FORMAT
    fi
    local mem="${MAX_MEMORY:-1GB}"
    if ! MAX_MEMORY_MEMMON="$(parse_memory "$mem")"; then
        err "MAX_MEMORY must be a size like 1GB, 1G, 512MB, 512M or a number of bytes, got \"$mem\""
        MAX_MEMORY_MEMMON=1GB
    fi

    # --- execution mode
    if [[ -z "${EXECUTION_MODE:-}" ]]; then
        if [[ -n "${DATABASE_URL:-}" ]]; then EXECUTION_MODE=distributed; else EXECUTION_MODE=local; fi
        log "EXECUTION_MODE not set: using $EXECUTION_MODE (DATABASE_URL is $([[ -n "${DATABASE_URL:-}" ]] && echo set || echo not set))"
    fi
    enum_var EXECUTION_MODE distributed local distributed
    export EXECUTION_MODE
    if [[ "$EXECUTION_MODE" == distributed ]]; then
        [[ -n "${DATABASE_URL:-}" ]] ||
            err "EXECUTION_MODE=distributed needs DATABASE_URL (postgresql://user:password@host:5432/db)"
        [[ -z "${DATABASE_URL:-}" || "$DATABASE_URL" =~ ^postgres(ql)?:// ]] ||
            err "DATABASE_URL must start with postgresql:// or postgres://"
        [[ -n "${KAFKA_BROKERS:-}" ]] ||
            err "EXECUTION_MODE=distributed needs KAFKA_BROKERS (host:9092[,host2:9092...])"
    fi
    if [[ "$AUTH_ENABLED" == true && -z "${AUTH_JWT_SECRET:-}" ]]; then
        err "AUTH_ENABLED=true needs AUTH_JWT_SECRET (the HS256 secret for session tokens); set AUTH_ENABLED=false only for development"
    fi
    [[ "$AUTH_ENABLED" == false ]] && warn "AUTH_ENABLED=false: every caller is an admin (development only)"

    # --- local mode: one process, its own SQLite
    if [[ "$EXECUTION_MODE" == local ]]; then
        if ((INSTANCES > 1)); then
            warn "EXECUTION_MODE=local keeps its data in one process's SQLite: INSTANCES=$INSTANCES forced to 1 (use distributed mode to scale)"
        fi
        if [[ -n "${WORKERS_SET:-}" ]] && ((WORKERS > 0)); then
            warn "EXECUTION_MODE=local runs executions inside the gateway process: WORKERS=$WORKERS ignored"
        fi
        INSTANCES=1
        WORKERS=0
    fi

    # --- ports must not overlap and must fit
    local gw_last=$((PORT + INSTANCES - 1)) wk_last=$((WORKER_PORT + WORKERS - 1))
    ((gw_last <= 65535)) || err "PORT=$PORT with INSTANCES=$INSTANCES needs ports up to $gw_last (> 65535)"
    if ((WORKERS > 0)); then
        ((wk_last <= 65535)) || err "WORKER_PORT=$WORKER_PORT with WORKERS=$WORKERS needs ports up to $wk_last"
        if ((WORKER_PORT <= gw_last && wk_last >= PORT)); then
            err "worker ports $WORKER_PORT-$wk_last overlap gateway ports $PORT-$gw_last (set WORKER_PORT)"
        fi
        if ((NGINX_PORT >= WORKER_PORT && NGINX_PORT <= wk_last)); then
            err "NGINX_PORT=$NGINX_PORT is one of the worker ports $WORKER_PORT-$wk_last"
        fi
    fi
    if ((NGINX_PORT >= PORT && NGINX_PORT <= gw_last)); then
        err "NGINX_PORT=$NGINX_PORT is one of the gateway ports $PORT-$gw_last"
    fi

    # --- addresses
    HOST="${HOST:-127.0.0.1}"
    [[ "$HOST" =~ ^[A-Za-z0-9_.:-]+$ ]] || err "HOST must be an address or host name, got \"$HOST\""
    case "$HOST" in
    0.0.0.0 | 127.0.0.1 | localhost | "::" | "::1") UPSTREAM_HOST=127.0.0.1 ;;
    *) UPSTREAM_HOST="$HOST" ;;
    esac
    METRICS_ALLOW="${METRICS_ALLOW:-127.0.0.0/8 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 ::1}"
    REAL_IP_FROM="${REAL_IP_FROM:-}"
    local a
    for a in ${METRICS_ALLOW//,/ } ${REAL_IP_FROM//,/ }; do
        [[ "$a" =~ ^[0-9A-Fa-f:./]+$ || "$a" == all ]] ||
            err "METRICS_ALLOW / REAL_IP_FROM take addresses or CIDR ranges, got \"$a\""
    done

    # --- PREFIX layout
    PREFIX="${PREFIX:-/}"
    [[ "$PREFIX" == /* ]] || PREFIX="$(pwd)/$PREFIX"
    local p="${PREFIX%/}"
    CONF_DIR="$p/etc/chaingraph"
    RUN_DIR="$p/run/chaingraph"
    LOG_DIR="$p/var/log/chaingraph"
    STATE_DIR="$p/var/lib/chaingraph"
    NGINX_STATE_DIR="$STATE_DIR/nginx"
    SUPERVISOR_SOCKET="$RUN_DIR/supervisor.sock"
    ((${#SUPERVISOR_SOCKET} < 100)) ||
        err "PREFIX is too long for a unix socket path ($SUPERVISOR_SOCKET): use a shorter PREFIX"
    [[ "$p" =~ ^[A-Za-z0-9_./@+-]*$ ]] ||
        err "PREFIX may only contain letters, digits and _ . / @ + - (got \"$PREFIX\")"
    NGINX_CONF="$CONF_DIR/nginx.conf"
    SUPERVISOR_CONF="$CONF_DIR/supervisord.conf"

    if ((${#ERRORS[@]})); then
        printf '%s: error: invalid configuration:\n' "$NAME" >&2
        printf '  - %s\n' "${ERRORS[@]}" >&2
        printf '%s: see docker/README-deployment.md for every variable\n' "$NAME" >&2
        exit 78
    fi

    if [[ "$EXECUTION_MODE" == local ]]; then
        export CHAINGRAPH_DATA_DIR="${CHAINGRAPH_DATA_DIR:-$STATE_DIR/data}"
    fi
    INSTANCE_TAG="${INSTANCE_ID_PREFIX:-${HOSTNAME:-$(hostname 2>/dev/null || echo chaingraph)}}"
    INSTANCE_TAG="${INSTANCE_TAG//[^A-Za-z0-9_.-]/-}"
}

make_dirs() {
    mkdir -p "$CONF_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$NGINX_STATE_DIR" ||
        die "cannot create the directories under PREFIX=$PREFIX (not writable by $(id -un)?)"
    [[ "$EXECUTION_MODE" == local ]] && mkdir -p "$CHAINGRAPH_DATA_DIR"
    if [[ "$(id -u)" == 0 ]]; then
        # nginx workers drop to an unprivileged user: let them reach their (unused) temp paths.
        chmod 0755 "$STATE_DIR" "$NGINX_STATE_DIR" 2>/dev/null || true
    fi
}

# Supervisor log lines for program NAME.
log_lines() {
    if [[ "$LOG_TO_STDOUT" == true ]]; then
        printf 'stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0'
    else
        printf 'stdout_logfile=%s\nstdout_logfile_maxbytes=%sMB\nstdout_logfile_backups=%s' \
            "$(sv "$LOG_DIR/$1.log")" "$LOG_MAXBYTES_MB" "$LOG_BACKUPS"
    fi
}
# Event listeners: stdout is the protocol channel, so only stderr can be logged.
listener_log_lines() {
    if [[ "$LOG_TO_STDOUT" == true ]]; then
        printf 'stderr_logfile=/dev/stderr\nstderr_logfile_maxbytes=0'
    else
        printf 'stderr_logfile=%s\nstderr_logfile_maxbytes=%sMB\nstderr_logfile_backups=%s' \
            "$(sv "$LOG_DIR/$1.log")" "$LOG_MAXBYTES_MB" "$LOG_BACKUPS"
    fi
}

generate() {
    make_dirs
    local a i name port programs="" gateways="" workers="" role="api" nl=$'\n'
    [[ "$EXECUTION_MODE" == local ]] && role="all"

    # file descriptors: as many as the hard limit allows, up to 65536
    local hard
    hard="$(ulimit -Hn)"
    [[ "$hard" == unlimited ]] && hard=1048576
    MINFDS=65536
    ((hard < MINFDS)) && MINFDS="$hard"
    local nginx_conns="$NGINX_WORKER_CONNECTIONS"
    ((nginx_conns > MINFDS)) && nginx_conns="$MINFDS"

    # ---------------- nginx
    TPL=()
    TPL[RUN_DIR]="$RUN_DIR"
    TPL[NGINX_STATE_DIR]="$NGINX_STATE_DIR"
    TPL[NGINX_RLIMIT_NOFILE]="$MINFDS"
    TPL[NGINX_WORKER_CONNECTIONS]="$nginx_conns"
    TPL[NGINX_ERROR_LOG_LEVEL]="warn"
    TPL[NGINX_LISTEN]="$NGINX_PORT"
    TPL[WS_TIMEOUT]="${NGINX_WS_TIMEOUT}s"
    if [[ "$(id -u)" == 0 ]]; then
        TPL[NGINX_USER_DIRECTIVE]="user ${NGINX_USER:-nobody nogroup};"
    else
        TPL[NGINX_USER_DIRECTIVE]="# (not root: nginx workers run as $(id -un))"
    fi
    case "$LB_METHOD" in
    ip_hash) TPL[UPSTREAM_BALANCING]="        ip_hash;" ;;
    least_conn) TPL[UPSTREAM_BALANCING]="        least_conn;" ;;
    hash) TPL[UPSTREAM_BALANCING]="        hash $LB_HASH_KEY consistent;" ;;
    round_robin) TPL[UPSTREAM_BALANCING]="        # round robin (nginx's default)" ;;
    esac
    local servers="" metrics_locs="" acl=""
    for a in ${METRICS_ALLOW//,/ }; do acl+="            allow $a;$nl"; done
    acl+="            deny all;"
    for ((i = 0; i < INSTANCES; i++)); do
        port=$((PORT + i))
        servers+="        server $UPSTREAM_HOST:$port max_fails=$NGINX_MAX_FAILS fail_timeout=${NGINX_FAIL_TIMEOUT}s;$nl"
        metrics_locs+="        location = /metrics/gateway-$i {$nl$acl$nl            proxy_pass http://$UPSTREAM_HOST:$port/metrics;$nl            proxy_set_header Connection \"\";$nl        }$nl"
    done
    for ((i = 0; i < WORKERS; i++)); do
        port=$((WORKER_PORT + i))
        metrics_locs+="        location = /metrics/worker-$i {$nl$acl$nl            proxy_pass http://$UPSTREAM_HOST:$port/metrics;$nl            proxy_set_header Connection \"\";$nl        }$nl"
    done
    TPL[UPSTREAM_SERVERS]="${servers%"$nl"}"
    TPL[METRICS_ACL]="$acl"
    TPL[METRICS_PROCESS_LOCATIONS]="${metrics_locs%"$nl"}"
    if [[ -n "$REAL_IP_FROM" ]]; then
        local rip=""
        for a in ${REAL_IP_FROM//,/ }; do rip+="    set_real_ip_from $a;$nl"; done
        rip+="    real_ip_header X-Forwarded-For;$nl    real_ip_recursive on;"
        TPL[REAL_IP_CONFIG]="$rip"
        TPL[FORWARDED_PROTO_MAP]="        ~^(https?)\$ \$1;"
    else
        TPL[REAL_IP_CONFIG]="    # (REAL_IP_FROM not set: no trusted proxy in front)"
        TPL[FORWARDED_PROTO_MAP]="        # (REAL_IP_FROM not set: a client's own X-Forwarded-Proto is ignored)"
    fi
    render "$ROOT/nginx/nginx.conf.template" "$NGINX_CONF"

    # ---------------- supervisord: one section per process
    TPL=()
    TPL[TWISTD_BIN]="$(sv "$TWISTD_BIN")"
    TPL[MODE]="$EXECUTION_MODE"
    TPL[BIND_HOST]="$HOST"
    TPL[STATE_DIR]="$(sv "$STATE_DIR")"
    TPL[MIN_UPTIME]="$MIN_UPTIME"
    TPL[MAX_RESTARTS]="$MAX_RESTARTS"
    TPL[STOP_WAIT_SECS]="$STOP_WAIT_SECS"
    local section tmp="$CONF_DIR/.program.conf"
    for ((i = 0; i < INSTANCES + WORKERS; i++)); do
        if ((i < INSTANCES)); then
            name="gateway-$i" port=$((PORT + i)) TPL[ROLE]="$role" TPL[INDEX]="$i"
            gateways+="${gateways:+,}$name"
        else
            name="worker-$((i - INSTANCES))" port=$((WORKER_PORT + i - INSTANCES)) TPL[ROLE]=worker
            TPL[INDEX]="$((i - INSTANCES))"
            workers+="${workers:+,}$name"
        fi
        TPL[NAME]="$name"
        TPL[PROC_PORT]="$port"
        TPL[INSTANCE_ID]="$(sv "$INSTANCE_TAG-$name")"
        TPL[LOG_LINES]="$(log_lines "$name")"
        render "$ROOT/supervisor/program.conf.template" "$tmp"
        section="$(<"$tmp")"
        programs+="$section$nl"
    done
    rm -f "$tmp"

    local groups="" memmon_args="-g gateways=$MAX_MEMORY_MEMMON"
    [[ -n "$workers" ]] && groups+="[group:workers]${nl}programs=$workers${nl}priority=200${nl}${nl}"
    groups+="[group:gateways]${nl}programs=$gateways${nl}priority=300${nl}"
    [[ -n "$workers" ]] && memmon_args+=" -g workers=$MAX_MEMORY_MEMMON"

    TPL=()
    TPL[SUPERVISOR_SOCKET]="$(sv "$SUPERVISOR_SOCKET")"
    TPL[RUN_DIR]="$(sv "$RUN_DIR")"
    TPL[LOG_DIR]="$(sv "$LOG_DIR")"
    TPL[STATE_DIR]="$(sv "$STATE_DIR")"
    TPL[MINFDS]="$MINFDS"
    TPL[LOG_BACKUPS]="$LOG_BACKUPS"
    if [[ "$LOG_TO_STDOUT" == true ]]; then
        # nodaemon copies supervisord's own log to stdout; the file itself is discarded.
        TPL[SUPERVISORD_LOGFILE]=/dev/null
        TPL[SUPERVISORD_LOGFILE_MAXBYTES]=0
    else
        TPL[SUPERVISORD_LOGFILE]="$(sv "$LOG_DIR/supervisord.log")"
        TPL[SUPERVISORD_LOGFILE_MAXBYTES]="${LOG_MAXBYTES_MB}MB"
    fi
    TPL[NGINX_BIN]="$(sv "$NGINX_BIN")"
    TPL[NGINX_STATE_DIR]="$(sv "$NGINX_STATE_DIR")"
    TPL[NGINX_CONF]="$(sv "$NGINX_CONF")"
    TPL[MAX_RESTARTS]="$MAX_RESTARTS"
    TPL[LOG_NGINX]="$(log_lines nginx)"
    TPL[GROUPS]="$groups"
    TPL[MEMMON_BIN]="$(sv "$MEMMON_BIN")"
    TPL[MEMMON_ARGS]="$memmon_args"
    TPL[MEMMON_TICK]="$MEMMON_TICK"
    TPL[LOG_MEMMON]="$(listener_log_lines memmon)"
    TPL[BASH_BIN]="$(sv "$BASH_BIN")"
    TPL[ENTRYPOINT]="$(sv "$SELF")"
    TPL[EXIT_ON_FATAL]="$([[ "$EXIT_ON_FATAL" == true ]] && echo 1 || echo 0)"
    TPL[LOG_FATAL]="$(listener_log_lines fatal-listener)"
    TPL[PROGRAMS]="${programs%"$nl"}"
    render "$ROOT/supervisor/supervisord.conf.template" "$SUPERVISOR_CONF"
}

summary() {
    local wports=""
    ((WORKERS > 0)) && wports=" (ports $WORKER_PORT-$((WORKER_PORT + WORKERS - 1)))"
    log "mode=$EXECUTION_MODE gateways=$INSTANCES (ports $PORT-$((PORT + INSTANCES - 1)))" \
        "workers=$WORKERS$wports" \
        "nginx=:$NGINX_PORT lb=$LB_METHOD max_memory=$MAX_MEMORY_MEMMON ws_timeout=${NGINX_WS_TIMEOUT}s" \
        "stopwaitsecs=$STOP_WAIT_SECS auth=$AUTH_ENABLED"
    log "configs: $NGINX_CONF $SUPERVISOR_CONF; $SUPERVISORCTL_BIN -c $SUPERVISOR_CONF status"
}

check_configs() {
    local rc=0
    log "nginx -t"
    "$NGINX_BIN" -t -q -e stderr -p "$NGINX_STATE_DIR/" -c "$NGINX_CONF" || rc=1
    if [[ -n "$PYTHON_BIN" ]]; then
        "$PYTHON_BIN" - "$SUPERVISOR_CONF" <<'PY' || rc=1
import sys
from supervisor.options import ServerOptions
opts = ServerOptions()
opts.realize(args=["-c", sys.argv[1]])
names = [p.name for g in opts.process_group_configs for p in g.process_configs]
print("supervisord config ok:", ", ".join(names))
PY
    fi
    return "$rc"
}

migrate() {
    [[ "$EXECUTION_MODE" == distributed ]] || return 0
    local deadline=$((SECONDS + MIGRATE_TIMEOUT)) attempt=1 out
    while :; do
        if out="$("$CGW_BIN" migrate 2>&1)"; then
            log "migrate: $out"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            printf '%s: error: database migration failed after %s attempt(s) (MIGRATE_TIMEOUT=%ss):\n%s\n' \
                "$NAME" "$attempt" "$MIGRATE_TIMEOUT" "$out" >&2
            exit 69 # EX_UNAVAILABLE
        fi
        log "migrate failed (attempt $attempt, retrying until MIGRATE_TIMEOUT=${MIGRATE_TIMEOUT}s): ${out##*$'\n'}"
        attempt=$((attempt + 1))
        sleep 2 &
        wait $! || true
    done
}

# With LOG_TO_STDOUT, supervisord opens /dev/stdout and /dev/stderr (again, by name) for its programs.
# That fails for a socket (ENXIO: systemd/journald, a Node.js parent) and for a file or tty this user may
# not open (EACCES): then put a pipe of our own in between.
stdio_pipes() {
    [[ "$LOG_TO_STDOUT" == true ]] || return 0
    if [[ -S /dev/stdout || ! -w /dev/stdout ]]; then
        exec 1> >(exec cat)
    fi
    if [[ -S /dev/stderr || ! -w /dev/stderr ]]; then
        exec 2> >(exec cat >&2)
    fi
}

# ------------------------------------------------------------------------------------------------------
main() {
    local cmd="${1:-serve}"
    case "$cmd" in
    fatal-listener)
        NAME="fatal-listener"
        fatal_listener
        ;;
    render | check | serve)
        MODE_CMD="$cmd"
        [[ -n "${WORKERS+x}" ]] && WORKERS_SET=1
        configure
        generate
        case "$cmd" in
        render)
            summary
            printf '%s\n%s\n' "$NGINX_CONF" "$SUPERVISOR_CONF"
            ;;
        check)
            summary
            check_configs
            ;;
        serve)
            summary
            # A SIGTERM while migrating ends the start-up at once (supervisord handles it afterwards).
            trap 'log "terminated during start-up"; exit 143' TERM INT
            migrate
            trap - TERM INT
            stdio_pipes
            export PYTHONUNBUFFERED=1
            exec "$SUPERVISORD_BIN" -n -c "$SUPERVISOR_CONF"
            ;;
        esac
        ;;
    *)
        exec "$@"
        ;;
    esac
}

main "$@"
