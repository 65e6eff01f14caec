#!/usr/bin/env bash
# Debian packages kgraft's data, tests and docs need. Idempotent; installs only what is missing.
#   dataset-fashion-mnist  Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist
#   wordnet-base           WordNet 3.0 dict files under /usr/share/wordnet
#   graphviz               `dot`, to render lineage and bias graphs
#   chromium, fonts-dejavu-core  headless Chromium and a font, to check and screenshot the HTML report
#   a JDK >= 17 and Maven  the local Neo4j test server (scripts/neo4j), unless already on PATH
set -euo pipefail
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for pkg in dataset-fashion-mnist wordnet-base graphviz chromium fonts-dejavu-core; do
  installed "$pkg" || missing+=("$pkg")
done
if ! { command -v java >/dev/null && java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; }; then
  missing+=(openjdk-17-jdk-headless)
fi
command -v mvn >/dev/null || missing+=(maven)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
