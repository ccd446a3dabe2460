#!/usr/bin/env bash
# PostgreSQL for chaingraph-gw tests: 127.0.0.1:5432, user postgres, trust auth, database chaingraph.
# Sourced by services.sh; also runnable alone: scripts/services/postgres.sh up|down|reset|status
# shellcheck shell=bash
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# $SERVICES_DIR/postgres holds data/ (the cluster) and postgres.log. When the `postgres` OS user
# cannot reach $SERVICES_DIR (a repo under a 0700 home, say), it is a symlink to a directory under
# /var/tmp instead; every command then uses the resolved path.
PG_LINK="$SERVICES_DIR/postgres"

pg_base() { readlink -f "$PG_LINK" 2>/dev/null || echo "$PG_LINK"; }
pg_data() { echo "$(pg_base)/data"; }
pg_log() { echo "$(pg_base)/postgres.log"; }

# Run a server-side tool as the `postgres` OS user when we are root (initdb and pg_ctl refuse root).
pg_run() {
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# psql against 127.0.0.1:5432 as postgres, never prompting for a password.
pg_psql() {
    PGCONNECT_TIMEOUT=3 psql -X -w -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"
}

pg_accepts() { [ "$(pg_psql -d postgres -tAc 'select 1' 2>/dev/null)" = 1 ]; }

# pid of the postmaster of our cluster, if it runs.
pg_our_pid() {
    local pidfile pid
    pidfile="$(pg_data)/postmaster.pid"
    [ -r "$pidfile" ] || return 1
    pid="$(head -n 1 "$pidfile")"
    pid_matches "$pid" "$(pg_data)" && echo "$pid"
}

# Directory with initdb/pg_ctl/postgres: PG_BINDIR, else the version the cluster was made with,
# else the newest /usr/lib/postgresql/N/bin.
pg_bindir() {
    local d v
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return 0; fi
    if [ -r "$(pg_data)/PG_VERSION" ]; then
        v="$(cat "$(pg_data)/PG_VERSION")"
        if [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]; then echo "/usr/lib/postgresql/$v/bin"; return 0; fi
    fi
    # shellcheck disable=SC2012  # version directories are plain numbers
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4n -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
    done
    return 1
}

pg_ensure_client() {
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client
}

pg_ensure_server() {
    pg_bindir >/dev/null && return 0
    # Debian's postgresql package creates (and, where services may start, starts) a "main"
    # cluster on 5432 during installation. We run our own, so switch that off first through the
    # drop-in directory that createcluster.conf includes.
    if [ "$(id -u)" = 0 ] && [ ! -d /etc/postgresql ]; then
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/50-chaingraph-services.conf
    fi
    apt_install postgresql
    pg_bindir >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl found"
}

pg_ensure_db() {
    if [ "$(pg_psql -d postgres -tAc "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]; then
        say "postgres: creating database $PG_DB"
        pg_psql -d postgres -c "create database $PG_DB" >/dev/null 2>&1 \
            || [ "$(pg_psql -d postgres -tAc "select 1 from pg_database where datname = '$PG_DB'")" = 1 ] \
            || die "postgres: could not create database $PG_DB"
    fi
}

# Create $PG_LINK (a directory the postgres user can write, or a symlink to one).
pg_prepare_base() {
    [ -e "$PG_LINK" ] && return 0
    [ -L "$PG_LINK" ] && rm -f "$PG_LINK"     # dangling symlink from a wiped /var/tmp
    mkdir -p "$PG_LINK"
    [ "$(id -u)" = 0 ] || return 0
    chown postgres: "$PG_LINK"
    if ! runuser -u postgres -- test -w "$PG_LINK" 2>/dev/null; then
        local alt
        alt="/var/tmp/chaingraph-services-$(printf '%s' "$SERVICES_DIR" | sha256sum | cut -c1-12)/postgres"
        say "postgres: the postgres OS user cannot reach $SERVICES_DIR; keeping the cluster in $alt"
        rmdir "$PG_LINK"
        mkdir -p "$alt"
        chown postgres: "$alt" "$(dirname "$alt")"
        ln -s "$alt" "$PG_LINK"
    fi
}

pg_up() {
    local pid bindir data log
    if pid="$(pg_our_pid)"; then
        pg_accepts || die "postgres: our server (pid $pid) runs but does not accept connections on $PG_HOST:$PG_PORT" "$(pg_log)"
        say "postgres: already running (ours, pid $pid)"
        pg_ensure_db
        return 0
    fi
    if port_open "$PG_HOST" "$PG_PORT"; then
        pg_ensure_client
        if pg_accepts; then
            say "postgres: reusing the server already on $PG_HOST:$PG_PORT"
            pg_ensure_db
            return 0
        fi
        die "postgres: something listens on $PG_HOST:$PG_PORT but does not accept 'psql -h $PG_HOST -U postgres' without a password; stop it or give user postgres trust auth"
    fi

    pg_ensure_server    # the postgresql package brings psql too
    pg_ensure_client
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        say "postgres: creating the postgres OS user"
        useradd --system --user-group --home-dir /var/lib/postgresql --create-home --shell /bin/bash postgres
    fi
    pg_prepare_base
    data="$(pg_data)"; log="$(pg_log)"
    bindir="$(pg_bindir)"
    if [ ! -s "$data/PG_VERSION" ]; then
        say "postgres: initdb $data ($("$bindir/postgres" --version))"
        rm -rf "$data"
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown -R postgres: "$(pg_base)"
        chmod 700 "$data"
        pg_run "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            --no-sync --no-instructions >"$(pg_base)/initdb.log" 2>&1 \
            || die "postgres: initdb failed" "$(pg_base)/initdb.log"
        # --auth=trust already writes trust lines for local, 127.0.0.1/32 and ::1/128; keep them explicit.
        cat >>"$data/pg_hba.conf" <<'EOF'
# chaingraph services: trust on loopback
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
EOF
    fi
    touch "$log"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$(pg_base)"
    say "postgres: starting on $PG_HOST:$PG_PORT"
    # No Unix socket (unix_socket_directories=''): everything goes through TCP, and the server
    # needs no /run/postgresql. fsync etc. off: test data only.
    pg_run "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 -s \
        -o "-c listen_addresses=$PG_HOST -p $PG_PORT -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c unix_socket_directories=''" \
        start >/dev/null 2>>"$log" 9>&- || die "postgres: pg_ctl start failed" "$log"
    local _
    for _ in $(seq 1 100); do
        pg_accepts && break
        pg_our_pid >/dev/null || die "postgres: server exited during startup" "$log"
        sleep 0.2
    done
    pg_accepts || die "postgres: server started but does not accept connections on $PG_HOST:$PG_PORT" "$log"
    pg_ensure_db
    say "postgres: up (pid $(pg_our_pid))"
}

pg_down() {
    local pid
    if pid="$(pg_our_pid)"; then
        say "postgres: stopping (pid $pid)"
        pg_run "$(pg_bindir)/pg_ctl" -D "$(pg_data)" -m fast -w -t 60 -s stop >/dev/null 2>&1 || {
            kill -TERM "$pid" 2>/dev/null || true
            sleep 2
            if pid_matches "$pid" "$(pg_data)"; then kill -KILL "$pid" 2>/dev/null || true; fi
        }
        say "postgres: stopped"
    elif port_open "$PG_HOST" "$PG_PORT"; then
        say "postgres: not started by us (something else listens on $PG_HOST:$PG_PORT); left running"
    else
        say "postgres: not running"
    fi
}

pg_reset() {
    pg_down
    local real
    real="$(pg_base)"
    if [ -e "$real" ] || [ -L "$PG_LINK" ]; then
        say "postgres: deleting $real"
        rm -rf "$real"
        [ -L "$PG_LINK" ] && rm -f "$PG_LINK"
        rmdir "$(dirname "$real")" 2>/dev/null || true   # the /var/tmp parent of the fallback, if empty
    fi
    return 0
}

# Prints one status line; returns 0 if a usable server is on 127.0.0.1:5432.
pg_status() {
    local pid
    if pid="$(pg_our_pid)"; then
        if command -v psql >/dev/null 2>&1 && pg_accepts; then
            echo "postgres: up (ours, pid $pid, data $(pg_data)) $DATABASE_URL"
            return 0
        fi
        echo "postgres: running (ours, pid $pid) but not accepting connections"
        return 1
    fi
    if port_open "$PG_HOST" "$PG_PORT"; then
        if command -v psql >/dev/null 2>&1 && pg_accepts; then
            echo "postgres: up (external server, not ours) $DATABASE_URL"
            return 0
        fi
        echo "postgres: port $PG_PORT taken by something that does not accept psql -U postgres"
        return 1
    fi
    echo "postgres: down"
    return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        up) pg_up ;;
        down) pg_down ;;
        reset) pg_reset ;;
        status) pg_status ;;
        *) echo "usage: $0 up|down|reset|status" >&2; exit 2 ;;
    esac
fi
