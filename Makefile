# Two commands on a fresh machine: `make run` and `make test`.
# Two pinned stacks (docs/stacks.md); both commands pick the newest one this
# machine can run (.ci/pick-stack), create its venv if missing and install its
# lock first:
#   tfx121: TFX 1.21, TensorFlow 2.21, Python 3.11, glibc >= 2.39
#           (requirements-tfx121.lock, venv .venv-tfx121)
#   tfx116: TFX 1.16, TensorFlow 2.16, Python 3.10, any glibc
#           (requirements.lock, venv .venv)
# `make STACK=tfx116 test` (or tfx121) chooses one explicitly.

STACK   ?= auto
# "<stack> <python>", or nothing when the machine can run neither (the venv's
# recipe then says what to install).
PICKED  := $(shell ./.ci/pick-stack $(STACK) 2>/dev/null)
RESOLVED := $(if $(filter auto,$(STACK)),$(word 1,$(PICKED)),$(STACK))
VENV    := $(if $(filter tfx121,$(RESOLVED)),.venv-tfx121,.venv)
LOCK    := $(if $(filter tfx121,$(RESOLVED)),requirements-tfx121.lock,requirements.lock)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The real ml-100k when it is next to the project; otherwise `run` downloads
# the official archive (verified) into ~/.cache/movielens-tfx.
DATA    ?= $(wildcard ../shared/data/ml-100k)
OUTPUT  ?= output
CONFIG  ?= default
SPLIT   ?=
# What `make test-chroot` runs with the tfx121 stack inside the Debian 13 chroot.
CHROOT_TARGET ?= test

.PHONY: run test test-unit test-chroot lint bench clean stack FORCE

# When this machine cannot run the stack, the venv's recipe always runs, to say why (a venv
# built in the Debian 13 chroot is in this checkout too, but its wheels need glibc 2.39).
ifeq ($(PICKED),)
$(STAMP): FORCE
endif
FORCE:

$(STAMP): $(LOCK) pyproject.toml
	@picked="$$(./.ci/pick-stack $(STACK))" || exit 1; \
	py="$${picked#* }"; \
	echo "stack $${picked%% *}: $$py, $(LOCK), $(VENV)"; \
	want="$$("$$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"; \
	if [ ! -x $(PY) ] || [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$$want" ]; then \
	  rm -rf $(VENV); "$$py" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

stack:
	@picked="$$(./.ci/pick-stack $(STACK))" || exit 1; echo "$$picked ($(LOCK), $(VENV))"

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

# The tfx121 stack's suite inside a Debian 13 chroot (.ci/trixie-chroot.sh, as
# root), for a machine whose glibc is too old for it: built once in
# /var/tmp/trixie, its venv .venv-tfx121 in this checkout.
test-chroot:
	./.ci/trixie-chroot.sh make STACK=tfx121 $(CHROOT_TARGET)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/pipeline_bench.py $(if $(DATA),--data $(DATA)) --script

clean:
	rm -rf $(OUTPUT) .pytest_cache
