# mus_qgis: `make demo` runs the main job, `make test` the tests; both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ENGINE := .engine
ENGINE_PY := $(ENGINE)/env/bin/python
STAMP := $(VENV)/.installed
ENGINE_STAMP := $(ENGINE)/.installed
export QT_QPA_PLATFORM ?= offscreen
export HF_HUB_OFFLINE ?= 1
export PYTHONDONTWRITEBYTECODE := 1
# QGIS (tests, demo, qgis_process) sends the engine's work to this Python.
export MUS_ENGINE_PYTHON ?= $(CURDIR)/$(ENGINE_PY)
# uv's cache for the engine's set-ups here (make install's, and the tests'): it outlives a clone.
UV_CACHE ?= $(HOME)/.cache/mus_qgis/uv
export MUS_UV_CACHE_DIR ?= $(UV_CACHE)

.PHONY: install test test-engine test-qgis lint format demo bench package stage help-pages \
	fresh-check clean

install: $(STAMP) $(ENGINE_STAMP)

# QGIS's side: Debian's QGIS and Python, and a venv over them with the test tools only.
$(STAMP): requirements-dev.txt scripts/install_system.sh
	bash scripts/install_system.sh
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The engine's side: its own environment, made by the same code as the plugin's "Set up the
# engine" (uv, binary wheels only), plus the test tools and the optional Ray (its tests run here).
# Two choices differ from a user's automatic ones, for these build machines: Debian's Python as the
# base (they cannot reach GitHub, where uv's standalone Pythons come from) and PyPI's torch build
# (they cannot reach PyTorch's CPU index).
$(ENGINE_STAMP): mus_qgis/engine/requirements.txt mus_qgis/engine/requirements-ray.txt \
		requirements-engine-dev.txt resources/engine/uv.json $(STAMP)
	/usr/bin/python3 -m mus_qgis.bridge setup --root $(ENGINE) \
		--base-python /usr/bin/python3 --torch default --cache-dir $(UV_CACHE) \
		--extra-requirements requirements-engine-dev.txt \
		--extra-requirements mus_qgis/engine/requirements-ray.txt
	touch $@

# The engine's tests run in the engine environment, where QGIS is not importable: the engine must
# not need it. The QGIS side's tests then run in a headless QGIS that sends jobs to that engine.
# The two suites run side by side, one a core: much of each is waiting on a worker, a subprocess
# or a file, so the pair takes far less than one after the other. Each keeps its own temporary
# folder, and its output is printed whole when it ends.
test: install help-pages
	rm -rf .qgis-settings .pytest-tmp  # pytest-qgis's profile: each run starts from a fresh one
	$(MAKE) --no-print-directory -j2 --output-sync=target test-engine test-qgis

test-engine: install
	mkdir -p .pytest-tmp  # pytest makes its --basetemp, not the folders above it
	$(ENGINE_PY) -m pytest -W ignore::pytest.PytestConfigWarning --basetemp=.pytest-tmp/engine \
		tests/engine

test-qgis: install
	mkdir -p .pytest-tmp
	$(PY) -m pytest --basetemp=.pytest-tmp/qgis tests/qgis

# ruff for style and errors; flake8 runs only flake8-qgis's QGS rules (QGIS API use, Qt 6 removals);
# check_portability: text opened without an encoding, POSIX-only calls no platform test guards.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m flake8 .
	$(PY) scripts/check_portability.py

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

demo: install stage
	$(PY) scripts/demo.py

bench: install
	$(ENGINE_PY) scripts/bench_streets.py
	$(ENGINE_PY) scripts/bench_classify.py
	$(ENGINE_PY) scripts/bench_fetch.py
	$(ENGINE_PY) scripts/bench_grid.py
	$(ENGINE_PY) scripts/bench_worker.py
	$(ENGINE_PY) scripts/bench_readings.py
	$(ENGINE_PY) scripts/bench_store.py
	$(ENGINE_PY) scripts/bench_ray.py
	$(ENGINE_PY) scripts/bench_probe.py
	$(PY) scripts/bench_inspector.py
	$(ENGINE_PY) scripts/bench_dreams.py

# dist/mus_qgis.zip, then checked against the QGIS plugin repository's upload rules.
package: help-pages
	/usr/bin/python3 scripts/package.py
	/usr/bin/python3 scripts/check_plugin_zip.py dist/mus_qgis.zip

# The packaged plugin unpacked in build/plugins, for QGIS_PLUGINPATH.
stage: help-pages
	/usr/bin/python3 scripts/package.py --stage build/plugins

# docs/algorithms/: each algorithm's Help page, made from the algorithms themselves by QGIS's
# Python (the test venv's, else the system's), so they are built, not kept: they cannot drift
# from the dialogs.
help-pages:
	$(if $(wildcard $(PY)),$(PY),/usr/bin/python3) scripts/help_pages.py

# The two commands on a brand-new Debian root: make fresh-check SUITE=bookworm (or trixie).
SUITE ?= bookworm
fresh-check:
	bash scripts/fresh_check.sh $(SUITE)

clean:
	rm -rf build dist demo_output .pytest_cache .pytest-tmp .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
