# Two commands on a fresh machine: `make run` and `make test`.
# Both create .venv with Python 3.10 (TFX 1.16 supports 3.9-3.10) if missing
# and install the pinned dependencies (requirements.lock) first.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The real ml-100k when it is next to the project; otherwise `run` downloads
# the official archive (verified) into ~/.cache/movielens-tfx.
DATA    ?= $(wildcard ../shared/data/ml-100k)
OUTPUT  ?= output
CONFIG  ?= default
SPLIT   ?=

.PHONY: run test test-unit lint bench clean

$(STAMP): requirements.lock pyproject.toml
	@py=""; \
	for candidate in python3.10 "$$(pyenv which python3.10 2>/dev/null)" "$$HOME/.pyenv/versions/3.10.13/bin/python"; do \
	  if [ -n "$$candidate" ] && command -v "$$candidate" >/dev/null 2>&1 && \
	     "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then py="$$candidate"; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "error: Python 3.10 not found (TFX 1.16 needs 3.9 or 3.10)." >&2; \
	  echo "  Install it, e.g. 'pyenv install 3.10.13' (this repo's .python-version selects it)," >&2; \
	  echo "  or 'uv python install 3.10', or your OS's python3.10 package; then run make again." >&2; \
	  exit 1; \
	fi; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then \
	  rm -rf $(VENV); "$$py" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/movielens-tfx run $(if $(DATA),--data $(DATA)) --output $(OUTPUT) --config $(CONFIG) $(if $(SPLIT),--split $(SPLIT))

# The whole suite: the fast unit layer (tests/unit, under a minute) first, then
# the rest on two worker processes (pytest-xdist; --dist loadfile keeps each
# test module on one worker, so its module-scoped pipeline runs are shared).
# Its Beam stages are mostly one core, so two modules at once fill both
# (timings: docs/testing.md).
test: $(STAMP)
	$(PY) -m pytest tests/unit
	$(PY) -m pytest -n 2 --dist loadfile tests --ignore=tests/unit

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/pipeline_bench.py $(if $(DATA),--data $(DATA)) --script

clean:
	rm -rf $(OUTPUT) .pytest_cache
