# The two commands from the README: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
export TORA2_CACHE ?= $(CURDIR)/.cache/tora2

.PHONY: install demo test test-fast bench info clean

install:
	@VENV=$(VENV) bash scripts/install.sh

info: install
	$(VENV)/bin/tora2 info --config tiny

# The embedded default model (tora2/data/embedded/, no download) on the three sprites of examples/demo/;
# out.contact.png shows every frame with the requested paths (docs/results.md keeps the shipped one).
demo: install
	$(VENV)/bin/tora2 generate --tracks examples/demo/tracks.json --seed 0 --overlay -o out.mp4 \
		--prompt "a strawberry moves from left to right, a frog face moves down and a lemon moves up"
	$(PY) scripts/contact_sheet.py out.mp4 -o out.contact.png

# Retrain the embedded default model from scratch on CPU (VAE model stages 1-8, encoders 2c, linear latents L1, L5) and ship it.
.PHONY: embedded
embedded: install
	PYTHON=$(PY) bash scripts/train_embedded.sh

# The paper's ablations at the embedded model's budget (after `make embedded`; docs/results.md).
.PHONY: ablations
ablations: install
	PYTHON=$(PY) bash scripts/run_ablations.sh

# The studio's end-to-end test drives Debian's chromium: installed here with apt when missing.
test: install
	@bash scripts/install_browser.sh
	TORA2_REQUIRE_BROWSER=1 $(PY) -m pytest -q -n 2 --dist loadfile -p no:cacheprovider

test-fast: install
	$(PY) -m pytest -q -x -m "not slow"

# The quick CPU benchmarks (each prints a table; docs/benchmarks.md lists them all).
bench: install
	$(PY) benchmarks/bench_flow.py
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_cli.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
