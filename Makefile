# The two commands from the README: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
export TORA2_CACHE ?= $(CURDIR)/.cache/tora2

.PHONY: install demo test test-fast bench info clean

install:
	@VENV=$(VENV) bash scripts/install.sh

info: install
	$(VENV)/bin/tora2 info --config tiny

demo: install
	$(VENV)/bin/tora2 info --config tiny

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile -p no:cacheprovider

test-fast: install
	$(PY) -m pytest -q -x -m "not slow"

bench: install
	$(PY) benchmarks/bench_flow.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
