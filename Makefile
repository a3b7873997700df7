# `make run` and `make test` set up everything they need: a venv, the dependencies,
# and their own PostgreSQL and Redis (installed binaries, else the pip packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# `make run` installs only what serving needs, so a new clone answers within a minute;
# `make demo` / `make demo-tools` add the demo's (demo/requirements.txt); the test and
# bench tools (hundreds of MB of schemas and SDKs) come with `make test`.
LOCAL  := $(VENV)/.installed-local
DEMO   := $(VENV)/.installed-demo
DEV    := $(VENV)/.installed-dev
# Everything mypy checks: the function and every tool around it.
TYPED  := function devserver loadgen demo bench soak tests
# What the image installs, exact versions with every file's hash (`make lock` remakes it
# from requirements.txt). The local installs take its versions, without the hashes, as
# constraints: what `make test` passes with is what ships.
LOCK   := requirements-lock.txt
PINS   := $(VENV)/constraints.txt
# uv installs the same pinned versions pip would, in seconds rather than the ~40 s pip
# took for `make test`'s set-up from a clean clone here. Compiled at install, as pip does:
# where PYTHONDONTWRITEBYTECODE is set (it is on this machine kind) every process would
# otherwise compile its imports again, and the suite starts hundreds.
UV     := $(BIN)/uv
# Where `make demo` draws its timeline: under .local/, out of `git status`.
DEMO_PLOT ?= .local/demo/autoscale.png

.PHONY: run test test-fast migrate typecheck bench demo demo-tools soak lock clean

run: $(LOCAL)
	$(BIN)/python -m devserver

migrate: $(LOCAL)
	$(BIN)/python -m function.migrate

# The suite's tests mostly wait (on servers, copies, faults), so several pytest workers
# share even two cores well: each worker takes whole files (`--dist loadfile`) and starts
# its own servers on free ports; the minute-long files are handed out first (conftest.py).
# TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 4
test: $(DEV)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The in-process and pure tests: every test no copy of its own process serves (conftest.py
# marks those `process`). Under a minute; `make test` runs them and the process layer.
test-fast: $(DEV)
	$(BIN)/python -m pytest -m "not process" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

typecheck: $(DEV)
	$(BIN)/python -m mypy $(TYPED)

bench: $(DEV)
	$(BIN)/python -m bench $(BENCH_ARGS)

demo: $(DEMO)
	$(BIN)/python -m demo --autoscale --plot $(DEMO_PLOT) $(DEMO_ARGS)

demo-tools: $(DEMO)

soak: $(DEV)
	$(BIN)/python -m soak --minutes $(or $(MINUTES),3) --copies 3

# uv resolves for Python 3.11 (the image's) on every platform, and records the hashes of
# every file of each pinned version.
lock: $(UV)
	$(UV) pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	  --custom-compile-command "make lock" requirements.txt -o $(LOCK)

# pip refuses hashes in a constraints file unless every requirement has them.
$(PINS): $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed -e '/--hash=/d' -e 's/ *\\$$//' $(LOCK) > $@

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.9,<1"

$(LOCAL): requirements.txt requirements-local.txt $(PINS) $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -c $(PINS) -r requirements-local.txt
	touch $@

$(DEMO): $(LOCAL) demo/requirements.txt
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -c $(PINS) -r demo/requirements.txt
	touch $@

$(DEV): $(LOCAL) requirements-dev.txt demo/requirements.txt $(wildcard tests/*/requirements.txt)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -c $(PINS) -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .hypothesis
