# kgraft: `make demo` runs the main job on the embedded store; `make test` runs the tests.
# Both set up a fresh machine: Debian packages, a virtual environment, the package itself.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint system-deps venv neo4j-start neo4j-stop clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	# Real data and weights shipped on PyPI; their declared deps (TensorFlow etc.) are not needed.
	$(VENV)/bin/pip install -q --no-deps 'animal-mnist==0.4' 'ccexam==1.0.0'
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: system-deps venv
	$(VENV)/bin/kgraft demo

test: system-deps venv
	bash scripts/run-tests.sh

lint: venv
	$(VENV)/bin/ruff check .

neo4j-start:
	bash scripts/neo4j/start.sh

neo4j-stop:
	bash scripts/neo4j/stop.sh

clean:
	rm -rf $(VENV) .kgraft .neo4j scripts/neo4j/target
