# Every target sets up what it needs: a .venv created and filled if missing (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint demo bench-delta bench-transfer bench-fleet bench-loss bench-large bench-estimate bench-pacing package clean os-deps web-deps

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) os-deps web-deps

# mosquitto (the local IoT Core) and zstd/xdelta3 (benchmarks) come from the OS package manager.
os-deps:
	@$(PY) -m local.osdeps

# the web console's pinned toolkit (web/package-lock.json) into git-ignored web/node_modules, with npm ci
web-deps: os-deps
	@$(PY) -m local.console install

test: setup
	$(PY) -m pytest -q -n 2 --timeout 600 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not e2e" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy otaformat chalicelib packager cli app.py infra

demo: setup
	$(PY) -m local.demo

bench-delta: setup
	$(PY) -m bench.delta

bench-transfer: setup
	$(PY) -m bench.transfer

# N = 100, 1000, 10000 simulated devices (bench/fleetsim), staged in waves of 250 (the 10,000-device rollout
# completes this way on 2 cores); e.g. make bench-fleet FLEET_ARGS="--devices 100,1000 --wave-size 100"
FLEET_ARGS ?= --wave-size 250 --wave-pause 0
bench-fleet: setup
	$(PY) -m bench.fleet $(FLEET_ARGS)

bench-loss: setup
	$(PY) -m bench.loss

bench-estimate: setup
	$(PY) -m bench.estimate

bench-large: setup
	$(PY) -m bench.large

# one paced device (a real agent) and a paced 100-device fleet at IoT Core's limits (bench/pacing.py)
bench-pacing: setup
	$(PY) -m bench.pacing $(PACING_ARGS)

# The Lambda bundle and SAM template in out/, proven: vendor/, chalice package, the bundle imported alone,
# every handler against a recorded AWS event on moto, cfn-lint (infra/package.py; infra/README.md).
package: $(STAMP)
	$(PY) -m infra.package

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .local-stack .demo
