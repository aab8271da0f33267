# aivm: `make demo` and `make test` work on a fresh Debian 12 / Ubuntu machine as root.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install deps test unit lint bench demo clean

install: $(STAMP)

deps:
	bash scripts/deps.sh

$(STAMP): pyproject.toml scripts/deps.sh
	bash scripts/deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Lint and types, then every test: the fast ones on every core, then the real-stack ones
# (they need root: libvirtd, QEMU, netns), REALSTACK_JOBS modules at a time, each on its
# own stack (an emulated guest keeps one core busy; tests/conftest.py schedules them).
REALSTACK_JOBS ?= 2
test: install
	$(VENV)/bin/ruff check aivm tests bench demo
	$(VENV)/bin/mypy --strict aivm
	$(PY) -m pytest -q -p no:cacheprovider -n auto -m "not realstack and not slow"
	$(PY) -m pytest -q -p no:cacheprovider -m "realstack or slow" \
	    -n $(REALSTACK_JOBS) --dist loadscope --no-loadscope-reorder

# Fast tests only: no daemon, no guest.
unit: install
	$(PY) -m pytest -q -n auto -m "not realstack and not slow"

lint: install
	$(VENV)/bin/ruff check aivm tests bench demo
	$(VENV)/bin/mypy --strict aivm

bench: install
	bash scripts/bench-deps.sh
	# as users run it: bytecode compiled and kept (this environment may set PYTHONDONTWRITEBYTECODE)
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m compileall -q aivm
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m bench

demo: install
	$(PY) -m demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
