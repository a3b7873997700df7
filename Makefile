# `make run` and `make test` set up everything they need: a venv, the dependencies,
# and their own PostgreSQL and Redis (installed binaries, else the pip packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test migrate typecheck clean bench demo soak

run: $(STAMP)
	$(BIN)/python -m devserver

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

migrate: $(STAMP)
	$(BIN)/python -m function.migrate

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/python -m demo --spawn 3 $(DEMO_ARGS)

typecheck: $(STAMP)
	$(BIN)/python -m mypy function

$(STAMP): requirements.txt requirements-dev.txt demo/requirements.txt $(wildcard tests/*/requirements.txt)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache

soak: $(STAMP)
	$(BIN)/python -m soak --minutes $(or $(MINUTES),3) --copies 3
