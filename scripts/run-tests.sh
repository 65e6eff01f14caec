#!/usr/bin/env bash
# Start a local Neo4j (unless NEO4J_URI points at one), run the linter and the test suite, stop Neo4j.
set -euo pipefail
cd "$(dirname "$0")/.."
started=0
if [ -z "${NEO4J_URI:-}" ]; then
  eval "$(bash scripts/neo4j/start.sh)"
  export NEO4J_URI NEO4J_USER NEO4J_PASSWORD
  started=1
fi
cleanup() { [ "$started" = 1 ] && bash scripts/neo4j/stop.sh || true; }
trap cleanup EXIT
echo "Neo4j: $NEO4J_URI   LadybugDB: embedded files under pytest's tmp dirs"
.venv/bin/ruff check .
.venv/bin/python -m pytest -v --durations=15 "$@"
