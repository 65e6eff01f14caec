#!/usr/bin/env bash
# Start a throwaway Neo4j Community 5.26 server (Bolt on 127.0.0.1, auth ON) for kgraft's tests.
#
#   eval "$(scripts/neo4j/start.sh)"   # starts it and exports NEO4J_URI / NEO4J_USER / NEO4J_PASSWORD
#   scripts/neo4j/stop.sh
#
# Progress and errors go to stderr; the only thing on stdout is the `export ...` line.
# If NEO4J_URI is already set, the caller points at its own server: nothing is done (exit 0).
#
# Environment (all optional):
#   KGRAFT_NEO4J_HOME           server home: data/, logs/, pid and console log (default .neo4j,
#                               relative paths are taken from the repository root)
#   NEO4J_PORT                  Bolt port (default 7687)
#   NEO4J_PASSWORD              password of user neo4j (default kgraft-test-pw, at least 8 chars)
#   KGRAFT_NEO4J_START_TIMEOUT  seconds to wait for Bolt (default 120)
#   KGRAFT_NEO4J_JAVA_OPTS      JVM options (default: -Xms256m -Xmx1g, C1-only JIT, Neo4j's usual flags)
#   KGRAFT_NEO4J_PAGECACHE_MB   page cache size in MiB (default 128)
#   JAVA_HOME                   Java 17+ to use (default: `java` on PATH)
#
# A fresh, empty database is created on every start (the old data/ is deleted).
set -euo pipefail

log() { echo "neo4j/start.sh: $*" >&2; }
die() { echo "neo4j/start.sh: ERROR: $*" >&2; exit 1; }

if [ -n "${NEO4J_URI:-}" ]; then
    log "NEO4J_URI is set (${NEO4J_URI}); using that server, not starting one."
    exit 0
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

NEO4J_HOME_DIR=${KGRAFT_NEO4J_HOME:-.neo4j}
case "$NEO4J_HOME_DIR" in
    /*) ;;
    *) NEO4J_HOME_DIR="$REPO_ROOT/$NEO4J_HOME_DIR" ;;
esac
PORT=${NEO4J_PORT:-7687}
PASSWORD=${NEO4J_PASSWORD:-kgraft-test-pw}
TIMEOUT=${KGRAFT_NEO4J_START_TIMEOUT:-120}
# -XX:TieredStopAtLevel=1 (C1 JIT only) roughly halves startup CPU on a 2-core box; fine for a test server.
JAVA_OPTS=${KGRAFT_NEO4J_JAVA_OPTS:-"-Xms256m -Xmx1g -XX:+UseG1GC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
-XX:-OmitStackTraceInFastThrow -Djdk.nio.maxCachedBufferSize=1024 -Dio.netty.tryReflectionSetAccessible=true \
-Dlog4j2.disable.jmx=true --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED"}

PID_FILE="$NEO4J_HOME_DIR/neo4j.pid"
CONSOLE_LOG="$NEO4J_HOME_DIR/neo4j.out"
ENV_FILE="$NEO4J_HOME_DIR/neo4j.env"
MARKER="$NEO4J_HOME_DIR/.kgraft-neo4j-home"
JAR="$SCRIPT_DIR/target/kgraft-neo4j.jar"

case "$PORT" in
    ''|*[!0-9]*) die "NEO4J_PORT must be a number, got '$PORT'" ;;
esac
[ "${#PASSWORD}" -ge 8 ] || die "NEO4J_PASSWORD must be at least 8 characters (Neo4j's minimum)"

export_line() {
    printf 'export NEO4J_URI=%q NEO4J_USER=neo4j NEO4J_PASSWORD=%q\n' "bolt://127.0.0.1:$1" "$2"
}

# pid of our running server, or nothing (also checks that the pid really is our server).
running_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 0
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    case "$pid" in ''|*[!0-9]*) return 0 ;; esac
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kgraft-neo4j.jar'; then
        echo "$pid"
    fi
}

# true while $1 is alive and not a zombie (our own dead child stays a zombie until start.sh exits).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- Java (17+) -------------------------------------------------------------------------------
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA=$(command -v java || true)
fi
[ -n "$JAVA" ] || die "Java not found (need Java 17+ on PATH or JAVA_HOME)"
JAVA_VERSION=$("$JAVA" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n1)
JAVA_MAJOR=${JAVA_VERSION%%.*}
case "$JAVA_MAJOR" in ''|*[!0-9]*) die "cannot tell the version of $JAVA (need Java 17+)" ;; esac
[ "$JAVA_MAJOR" -ge 17 ] || die "Java 17+ required, $JAVA is $JAVA_VERSION"

mkdir -p "$NEO4J_HOME_DIR"

# Serialise concurrent start.sh calls (e.g. several test processes) on the same home.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$NEO4J_HOME_DIR/.start.lock"
    flock -w 600 9 || die "timed out waiting for another start.sh on $NEO4J_HOME_DIR"
fi

# --- Already running? --------------------------------------------------------------------------
pid=$(running_pid)
if [ -n "$pid" ]; then
    if [ -f "$ENV_FILE" ]; then
        # shellcheck disable=SC1090
        running_port=$(. "$ENV_FILE"; echo "${NEO4J_URI##*:}")
        running_pw=$(. "$ENV_FILE"; echo "$NEO4J_PASSWORD")
    else
        running_port=$PORT running_pw=$PASSWORD
    fi
    log "already running (pid $pid) on bolt://127.0.0.1:$running_port; use stop.sh to stop it"
    if [ "$running_port" != "$PORT" ] || [ "$running_pw" != "$PASSWORD" ]; then
        log "WARNING: the running server uses port/password different from the requested ones"
    fi
    export_line "$running_port" "$running_pw"
    exit 0
fi
rm -f "$PID_FILE"

if port_in_use "$PORT"; then
    die "port 127.0.0.1:$PORT is already in use by another process (set NEO4J_PORT, or NEO4J_URI to use that server)"
fi

# --- Fresh home ---------------------------------------------------------------------------------
if [ ! -f "$MARKER" ] && [ -n "$(ls -A "$NEO4J_HOME_DIR" 2>/dev/null | grep -v '^\.start\.lock$' || true)" ]; then
    die "$NEO4J_HOME_DIR is not empty and was not created by start.sh; refusing to wipe it (set KGRAFT_NEO4J_HOME)"
fi
touch "$MARKER"
rm -rf "$NEO4J_HOME_DIR/data" "$NEO4J_HOME_DIR/logs" "$NEO4J_HOME_DIR/build.log" "$CONSOLE_LOG" "$ENV_FILE"

# --- Build (only when the jar is missing or older than its sources) -----------------------------
if [ ! -f "$JAR" ] || [ ! -d "$SCRIPT_DIR/target/lib" ] \
    || [ -n "$(find "$SCRIPT_DIR/pom.xml" "$SCRIPT_DIR/src" -newer "$JAR" -print -quit)" ]; then
    command -v mvn >/dev/null 2>&1 || die "Maven (mvn) not found; it is needed once to build $JAR"
    log "building the Neo4j test server with Maven (first time downloads ~170 MB to ~/.m2) ..."
    build_start=$SECONDS
    BUILD_LOG="$NEO4J_HOME_DIR/build.log"
    if ! (cd "$SCRIPT_DIR" && mvn -q -B package) >"$BUILD_LOG" 2>&1; then
        tail -n 30 "$BUILD_LOG" >&2
        die "Maven build failed (full log: $BUILD_LOG)"
    fi
    touch "$JAR"  # mark it current even if Maven found nothing to repackage
    log "built in $((SECONDS - build_start)) s"
fi

# --- Start -------------------------------------------------------------------------------------
start=$SECONDS
# shellcheck disable=SC2086
KGRAFT_NEO4J_HOME="$NEO4J_HOME_DIR" NEO4J_PORT="$PORT" NEO4J_PASSWORD="$PASSWORD" \
    nohup "$JAVA" $JAVA_OPTS -jar "$JAR" >"$CONSOLE_LOG" 2>&1 </dev/null 9>&- &
pid=$!
echo "$pid" >"$PID_FILE"
log "starting Neo4j (pid $pid) on bolt://127.0.0.1:$PORT, home $NEO4J_HOME_DIR ..."

while :; do
    if ! alive "$pid"; then
        rm -f "$PID_FILE"
        tail -n 20 "$CONSOLE_LOG" >&2 || true
        reason=$(grep -m1 '^NEO4J FAILED:' "$CONSOLE_LOG" 2>/dev/null || true)
        die "Neo4j exited during startup${reason:+: ${reason#NEO4J FAILED: }} (log: $CONSOLE_LOG)"
    fi
    if grep -q '^NEO4J READY' "$CONSOLE_LOG" 2>/dev/null && port_in_use "$PORT"; then
        break
    fi
    if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 5
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$PID_FILE"
        tail -n 20 "$CONSOLE_LOG" >&2 || true
        die "Neo4j did not answer on 127.0.0.1:$PORT within ${TIMEOUT}s (log: $CONSOLE_LOG)"
    fi
    sleep 0.5
done

(umask 077 && export_line "$PORT" "$PASSWORD" >"$ENV_FILE")
log "Neo4j ready on bolt://127.0.0.1:$PORT (pid $pid, $((SECONDS - start)) s; user neo4j)"
export_line "$PORT" "$PASSWORD"
