# `make run` and `make test` set up everything they need: a venv, the dependencies,
# and their own PostgreSQL and Redis (installed binaries, else the pip packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# `make run` installs only what serving needs, so a new clone answers within a minute;
# the test, demo and bench tools (hundreds of MB of schemas and SDKs) come with `make test`.
LOCAL  := $(VENV)/.installed-local
DEV    := $(VENV)/.installed-dev

.PHONY: run test migrate typecheck bench demo soak clean

run: $(LOCAL)
	$(BIN)/python -m devserver

migrate: $(LOCAL)
	$(BIN)/python -m function.migrate

test: $(DEV)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: $(DEV)
	$(BIN)/python -m mypy function

bench: $(DEV)
	$(BIN)/python -m bench $(BENCH_ARGS)

demo: $(DEV)
	$(BIN)/python -m demo --spawn 3 $(DEMO_ARGS)

soak: $(DEV)
	$(BIN)/python -m soak --minutes $(or $(MINUTES),3) --copies 3

$(LOCAL): requirements.txt requirements-local.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-local.txt
	touch $@

$(DEV): $(LOCAL) requirements-dev.txt demo/requirements.txt $(wildcard tests/*/requirements.txt)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .hypothesis
