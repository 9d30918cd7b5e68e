# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when it is
# missing and installs only when pyproject.toml changed since the last install (a stamp
# file), so a second run starts at once.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: demo test docs lint run listen bench clean

demo: $(VENV)/.stamp-runtime
	rm -f runs/demo/events.jsonl  # --log appends; the demo's log holds this run only
	$(BIN)/mestream run --preset demo $(ARGS)

# Until Ctrl-C, publishing on the default endpoint; watch it with `make listen` in another shell.
run: $(VENV)/.stamp-runtime
	$(BIN)/mestream run $(ARGS)

listen: $(VENV)/.stamp-runtime
	$(BIN)/mestream listen tcp://127.0.0.1:5556 $(ARGS)

test: $(VENV)/.stamp-dev docs lint
	$(BIN)/python -m pytest -q $(ARGS)

# ruff (lint rules and formatting, settings in pyproject.toml) over the whole tree, and mypy
# over the runtime side (tools/typecheck.sh says why it needs a script).
lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	tools/typecheck.sh

# The manual in docs/; --strict turns a broken link, a missing anchor or a page left out of the
# nav in mkdocs.yml into a failure, so `make test` (and CI) catches them.
docs: $(VENV)/.stamp-dev
	$(BIN)/mkdocs build --strict --site-dir build/site

bench: $(VENV)/.stamp-dev
	$(BIN)/python -m mestream.bench.ring_bench
	$(BIN)/python -m mestream.bench.synthetic_bench
	$(BIN)/python -m mestream.bench.backend_bench
	$(BIN)/python -m mestream.bench.live_bench
	$(BIN)/python -m mestream.bench.idle_bench
	$(BIN)/mestream bench --out runs/bench --update-results

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.stamp-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	@touch $@ $(VENV)/.stamp-runtime

clean:
	rm -rf $(VENV) runs build *.egg-info
