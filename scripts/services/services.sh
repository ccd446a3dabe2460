#!/usr/bin/env bash
# Local PostgreSQL + Kafka for chaingraph-gw's distributed mode and its tests.
#
#   scripts/services/services.sh up      start both (idempotent; reuses servers already there)
#   scripts/services/services.sh down    stop what this script started (pid files)
#   scripts/services/services.sh reset   down, then delete the state under $SERVICES_DIR
#   scripts/services/services.sh status  one line per service; exit 0 only if both answer
#   scripts/services/services.sh env     DATABASE_URL=... and KAFKA_BROKERS=... (two lines)
#
# State: ${CHAINGRAPH_SERVICES_DIR:-<repo>/var/services}. Progress goes to stderr; `up` ends
# by printing the two env lines on stdout, so `eval "$(scripts/services/services.sh up)"` or
# `scripts/services/services.sh up > .env` work.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=postgres.sh
. "$HERE/postgres.sh"
# shellcheck source=kafka.sh
. "$HERE/kafka.sh"

print_env() {
    echo "DATABASE_URL=$DATABASE_URL"
    echo "KAFKA_BROKERS=$KAFKA_BROKERS"
}

# up/down/reset of one SERVICES_DIR never run at the same time (make -j, two terminals).
lock() {
    mkdir -p "$SERVICES_DIR"
    exec 9>"$SERVICES_DIR/.lock"
    flock -w 300 9 || die "another services.sh holds $SERVICES_DIR/.lock"
}

cmd="${1:-}"
case "$cmd" in up | down | reset) lock ;; esac
case "$cmd" in
    up)
        say "up: state in $SERVICES_DIR"
        pg_up
        kafka_up
        say "up: done"
        print_env
        ;;
    down)
        kafka_down
        pg_down
        ;;
    reset)
        kafka_reset
        pg_reset
        rm -f "$SERVICES_DIR/apt.log" "$SERVICES_DIR/.lock"
        rmdir "$SERVICES_DIR" 2>/dev/null || true
        ;;
    status)
        rc=0
        pg_status || rc=3
        kafka_status || rc=3
        exit "$rc"
        ;;
    env)
        print_env
        ;;
    *)
        echo "usage: $0 up|down|reset|status|env" >&2
        exit 2
        ;;
esac
