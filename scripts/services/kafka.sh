#!/usr/bin/env bash
# Single-node KRaft Kafka 4.x for chaingraph-gw tests: broker 127.0.0.1:9092, controller 9093.
# Jars come from Maven Central (scripts/services/kafka/pom.xml, cached in ~/.m2).
# Sourced by services.sh; also runnable alone: scripts/services/kafka.sh up|down|reset|status
# shellcheck shell=bash
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_CFG="$SVC_SCRIPTS/kafka"
KDIR="$SERVICES_DIR/kafka"
KAFKA_LIBS="$KDIR/libs"
KAFKA_DATA="$KDIR/data"
KAFKA_PROPS="$KDIR/server.properties"
KAFKA_LOG="$KDIR/kafka.log"
KAFKA_PIDFILE="$KDIR/kafka.pid"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
# Python with confluent-kafka for the readiness check; without it a raw ApiVersions probe is used.
VENV_PY="${SERVICES_PYTHON:-$REPO_ROOT/.venv/bin/python}"

# --- java / maven -------------------------------------------------------------------

_java_major() {
    "$1" -XshowSettings:properties -version 2>&1 \
        | awk -F= '/java.specification.version/ { gsub(/ /, "", $2); split($2, v, "."); print (v[1] == 1 ? v[2] : v[1]); exit }'
}

# Sets JAVA (a java >= 17) and JAVA_HOME, installing openjdk-17-jre-headless if there is none.
kafka_find_java() {
    local c m
    for c in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java 2>/dev/null)" /usr/lib/jvm/*/bin/java; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        m="$(_java_major "$c")"
        if [ -n "$m" ] && [ "$m" -ge 17 ] 2>/dev/null; then
            JAVA="$(readlink -f "$c")"
            JAVA_HOME="$(dirname "$(dirname "$JAVA")")"
            export JAVA_HOME
            return 0
        fi
    done
    [ "${1:-}" = noinstall ] && return 1
    # one apt transaction for Java and (when the jars must be fetched) Maven
    if ! command -v mvn >/dev/null 2>&1 && ! kafka_libs_current; then
        apt_install openjdk-17-jre-headless maven
    else
        apt_install openjdk-17-jre-headless
    fi
    kafka_find_java noinstall || die "kafka: no Java 17+ found even after installing openjdk-17-jre-headless"
}

_libs_stamp() { echo "$(sha256sum <"$KAFKA_CFG/pom.xml" | cut -c1-16)-${KAFKA_VERSION:-default}"; }

# true if $KAFKA_LIBS holds the jars for the current pom (and KAFKA_VERSION)
kafka_libs_current() {
    [ -f "$KAFKA_LIBS/.stamp" ] && [ "$(cat "$KAFKA_LIBS/.stamp")" = "$(_libs_stamp)" ] \
        && compgen -G "$KAFKA_LIBS/org.apache.kafka.kafka_2.13-*.jar" >/dev/null
}

# Copies the broker's jars into $KAFKA_LIBS unless they are there for this pom already.
kafka_ensure_libs() {
    local want tmp ver
    kafka_libs_current && return 0
    want="$(_libs_stamp)"
    command -v mvn >/dev/null 2>&1 || apt_install maven
    say "kafka: fetching jars with Maven (cached in ~/.m2; the first run downloads about 66 MB)"
    tmp="$KDIR/libs.tmp"
    rm -rf "$tmp"
    mvn -B -ntp -Dstyle.color=never -f "$KAFKA_CFG/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -Dmdep.prependGroupId=true -DoutputDirectory="$tmp" \
        ${KAFKA_VERSION:+-Dkafka.version="$KAFKA_VERSION"} >"$KDIR/maven.log" 2>&1 \
        || die "kafka: Maven could not fetch the Kafka jars" "$KDIR/maven.log"
    # smoke test: prints the version (and exits) before any config is read
    ver="$("$JAVA" -cp "$tmp/*" kafka.Kafka --version 2>>"$KDIR/maven.log" | tail -n 1)" \
        || die "kafka: the fetched jars do not run kafka.Kafka --version" "$KDIR/maven.log"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    echo "$want" >"$KAFKA_LIBS/.stamp"
    say "kafka: $(compgen -G "$KAFKA_LIBS/*.jar" | wc -l) jars for Kafka $ver in $KAFKA_LIBS"
}

# --- probes -----------------------------------------------------------------------------

# Raw ApiVersions v0 request (no client library): true if a Kafka broker answers on the port.
kafka_apiversions_probe() {
    local reply
    reply="$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        # size 15 | api_key 18 | version 0 | correlation id 1 | client id "probe"
        printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x01\x00\x05probe" >&3
        head -c 10 <&3 | od -An -tx1 | tr -d " \n"' "$KAFKA_HOST" "$KAFKA_PORT" 2>/dev/null)" || return 1
    # correlation id 1, then error code 0 (or 35 UNSUPPORTED_VERSION: still a Kafka broker)
    [ "${reply:8:8}" = 00000001 ] && { [ "${reply:16:4}" = 0000 ] || [ "${reply:16:4}" = 0023 ]; }
}

_venv_has_kafka() {
    [ -x "$VENV_PY" ] && "$VENV_PY" -c 'import confluent_kafka' >/dev/null 2>&1
}

# kafka_answers TIMEOUT: the broker on 127.0.0.1:9092 returns metadata (confluent_kafka in the
# repo's .venv), or at least answers ApiVersions (no venv). Error text in $KAFKA_PROBE_ERR.
kafka_answers() {
    local t="${1:-30}"
    KAFKA_PROBE_ERR=""
    if _venv_has_kafka; then
        KAFKA_PROBE_ERR="$("$VENV_PY" "$KAFKA_CFG/kafka_ready.py" --bootstrap "$KAFKA_BROKERS" --timeout "$t" 2>&1)"
        return $?
    fi
    local end=$((SECONDS + t))
    while :; do
        kafka_apiversions_probe && return 0
        [ "$SECONDS" -ge "$end" ] && { KAFKA_PROBE_ERR="no ApiVersions answer from $KAFKA_BROKERS"; return 1; }
        sleep 0.5
    done
}

# pid of the broker this script started, if it runs.
kafka_our_pid() {
    local pid
    [ -r "$KAFKA_PIDFILE" ] || return 1
    pid="$(cat "$KAFKA_PIDFILE")"
    pid_matches "$pid" "$KAFKA_PROPS" && echo "$pid"
}

# --- up / down ----------------------------------------------------------------------------

kafka_render_config() {
    local tpl
    tpl="$(<"$KAFKA_CFG/server.properties.in")"
    printf '%s\n' "${tpl//@DATA_DIR@/"$KAFKA_DATA"}" >"$KAFKA_PROPS"
}

kafka_format() {
    if [ -s "$KAFKA_DATA/meta.properties" ]; then
        return 0
    fi
    local cid=-
    # Kafka's Uuid: 16 random bytes, base64url without padding; never starting with '-'.
    while [ "${cid:0:1}" = - ]; do
        cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    say "kafka: formatting $KAFKA_DATA (cluster id $cid)"
    rm -rf "$KAFKA_DATA"
    mkdir -p "$KAFKA_DATA"
    "$JAVA" -Xmx256m -Djava.io.tmpdir="$KDIR/tmp" \
        -Dlog4j2.configurationFile="$KAFKA_CFG/tools-log4j2.properties" -cp "$KAFKA_LIBS/*" \
        kafka.tools.StorageTool format --standalone --cluster-id "$cid" --config "$KAFKA_PROPS" \
        >"$KDIR/format.log" 2>&1 || die "kafka: formatting the storage failed" "$KDIR/format.log"
}

kafka_up() {
    local pid
    mkdir -p "$KDIR"
    if pid="$(kafka_our_pid)"; then
        kafka_answers 30 || die "kafka: our broker (pid $pid) runs but does not answer on $KAFKA_BROKERS: $KAFKA_PROBE_ERR" "$KAFKA_LOG"
        say "kafka: already running (ours, pid $pid)"
        return 0
    fi
    rm -f "$KAFKA_PIDFILE"
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        if kafka_answers 10; then
            say "kafka: reusing the broker already on $KAFKA_BROKERS"
            return 0
        fi
        die "kafka: $KAFKA_BROKERS is taken by something that does not answer as a Kafka broker ($KAFKA_PROBE_ERR)"
    fi

    kafka_find_java
    kafka_ensure_libs
    mkdir -p "$KDIR/tmp"
    kafka_render_config
    kafka_format

    [ -f "$KAFKA_LOG" ] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    say "kafka: starting broker on $KAFKA_BROKERS (controller :$KAFKA_CONTROLLER_PORT, heap $KAFKA_HEAP, log $KAFKA_LOG)"
    # setsid: own session, so the broker outlives this shell and its terminal; the inner shell
    # writes its own pid ($$), which `exec` hands to the JVM.
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PIDFILE" \
        "$JAVA" -Xms128m -Xmx"$KAFKA_HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true -Djava.io.tmpdir="$KDIR/tmp" -Dkafka.logs.dir="$KDIR" \
        -Dlog4j2.configurationFile="$KAFKA_CFG/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >"$KAFKA_LOG" 2>&1 9>&- &   # 9: services.sh's lock, not for the daemon
    local i=0
    while [ ! -s "$KAFKA_PIDFILE" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    pid="$(cat "$KAFKA_PIDFILE" 2>/dev/null)" || die "kafka: the broker did not start" "$KAFKA_LOG"

    # Ready = "Kafka Server started" is logged and 9092 accepts connections (the broker listener
    # opens only after the broker is unfenced), then an admin/metadata round trip.
    local end=$((SECONDS + KAFKA_START_TIMEOUT))
    while :; do
        pid_alive "$pid" || die "kafka: the broker exited during startup" "$KAFKA_LOG"
        if grep -q 'Kafka Server started' "$KAFKA_LOG" && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            break
        fi
        [ "$SECONDS" -ge "$end" ] && die "kafka: the broker was not ready within ${KAFKA_START_TIMEOUT}s" "$KAFKA_LOG"
        sleep 0.25
    done
    kafka_answers 30 || die "kafka: the broker started but does not answer on $KAFKA_BROKERS: $KAFKA_PROBE_ERR" "$KAFKA_LOG"
    say "kafka: up (pid $pid)"
}

kafka_down() {
    local pid i
    if pid="$(kafka_our_pid)"; then
        say "kafka: stopping (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 300); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        if pid_alive "$pid"; then
            say "kafka: still running after 30 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
        rm -f "$KAFKA_PIDFILE"
        say "kafka: stopped"
    else
        rm -f "$KAFKA_PIDFILE"
        if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            say "kafka: not started by us (something else listens on $KAFKA_BROKERS); left running"
        else
            say "kafka: not running"
        fi
    fi
}

# Deletes the broker's state; keeps the jars ($KAFKA_LIBS), which only depend on the pom.
kafka_reset() {
    kafka_down
    if [ -d "$KDIR" ]; then
        say "kafka: deleting state in $KDIR (keeping libs/)"
        find "$KDIR" -mindepth 1 -maxdepth 1 ! -name libs -exec rm -rf {} +
        rmdir "$KDIR" 2>/dev/null || true
    fi
    return 0
}

# Prints one status line; returns 0 if a broker answers on 127.0.0.1:9092.
kafka_status() {
    local pid
    if pid="$(kafka_our_pid)"; then
        if kafka_answers 5; then
            echo "kafka: up (ours, pid $pid, data $KAFKA_DATA) $KAFKA_BROKERS"
            return 0
        fi
        echo "kafka: running (ours, pid $pid) but not answering: $KAFKA_PROBE_ERR"
        return 1
    fi
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        if kafka_answers 5; then
            echo "kafka: up (external broker, not ours) $KAFKA_BROKERS"
            return 0
        fi
        echo "kafka: port $KAFKA_PORT taken by something that does not answer as Kafka"
        return 1
    fi
    echo "kafka: down"
    return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        up) kafka_up ;;
        down) kafka_down ;;
        reset) kafka_reset ;;
        status) kafka_status ;;
        *) echo "usage: $0 up|down|reset|status" >&2; exit 2 ;;
    esac
fi
