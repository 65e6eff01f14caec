#!/usr/bin/env bash
# Make what scripts/gpu-check.sh needs on a GPU machine without network, on a machine with network:
#   .whl/      wheels (CPython 3.12, manylinux x86-64) of the packages such a machine's Python may lack,
#              at the versions the project's virtual environment holds
#   .gpudata/fashion-mnist/   a copy of Debian's Fashion-MNIST IDX files
# Both folders are build outputs: keep them out of git (e.g. in .git/info/exclude).
#
#   bash scripts/gpu-check-prepare.sh [PYTHON_VERSION (3.12)]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-3.12}
VENV_PY=.venv/bin/python
PACKAGES="ladybug neo4j rdflib pyshacl owlrl prettytable html5rdf jsonschema jsonschema-specifications referencing rpds-py ccexam"
mkdir -p .whl .gpudata/fashion-mnist
for name in $PACKAGES; do
    version=$("$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "$name==$version"
done
cp /usr/share/datasets/fashion-mnist/*.gz .gpudata/fashion-mnist/
du -sh .whl .gpudata
