#!/usr/bin/env bash
# Stop the Neo4j test server started by scripts/neo4j/start.sh (SIGTERM, wait, then SIGKILL).
# Idempotent: exits 0 when nothing is running. Uses the same KGRAFT_NEO4J_HOME as start.sh.
set -euo pipefail

log() { echo "neo4j/stop.sh: $*" >&2; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
NEO4J_HOME_DIR=${KGRAFT_NEO4J_HOME:-.neo4j}
case "$NEO4J_HOME_DIR" in
    /*) ;;
    *) NEO4J_HOME_DIR="$REPO_ROOT/$NEO4J_HOME_DIR" ;;
esac
PID_FILE="$NEO4J_HOME_DIR/neo4j.pid"
WAIT=${KGRAFT_NEO4J_STOP_TIMEOUT:-60}

if [ ! -f "$PID_FILE" ]; then
    log "not running (no pid file in $NEO4J_HOME_DIR)"
    exit 0
fi
pid=$(cat "$PID_FILE" 2>/dev/null || true)
case "$pid" in
    ''|*[!0-9]*) log "ignoring bad pid file"; rm -f "$PID_FILE" "$NEO4J_HOME_DIR/neo4j.env"; exit 0 ;;
esac
# Only signal the process if it still is our server (the pid may have been reused).
if ! kill -0 "$pid" 2>/dev/null \
    || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kgraft-neo4j.jar'; then
    log "not running (stale pid file, pid $pid)"
    rm -f "$PID_FILE" "$NEO4J_HOME_DIR/neo4j.env"
    exit 0
fi

kill -TERM "$pid" 2>/dev/null || true
start=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
    if [ $((SECONDS - start)) -ge "$WAIT" ]; then
        log "pid $pid still alive after ${WAIT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
        break
    fi
    sleep 0.2
done
rm -f "$PID_FILE" "$NEO4J_HOME_DIR/neo4j.env"
log "stopped (pid $pid, $((SECONDS - start)) s)"
