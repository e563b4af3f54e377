# mus_qgis: `make demo` runs the main job, `make test` the tests; both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export QT_QPA_PLATFORM ?= offscreen
export HF_HUB_OFFLINE ?= 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test lint format demo bench package stage clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints-build.txt scripts/install_system.sh
	bash scripts/install_system.sh
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints-build.txt $(PY) -m pip install -q --disable-pip-version-check \
		--no-binary pyproj,shapely -r requirements-dev.txt  # why: requirements.txt
	touch $@

# The engine's tests run with pytest-qgis switched off and QGIS unimportable: the engine must not
# need QGIS. The adapter's tests then run inside a headless QGIS.
test: install
	rm -rf .qgis-settings  # pytest-qgis's profile: each run starts from a fresh one
	$(PY) -m pytest -p no:pytest_qgis -W ignore::pytest.PytestConfigWarning tests/engine
	$(PY) -m pytest tests/qgis

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

demo: install stage
	$(PY) scripts/demo.py

bench: install
	$(PY) scripts/bench_streets.py
	$(PY) scripts/bench_classify.py
	$(PY) scripts/bench_fetch.py
	$(PY) scripts/bench_grid.py

package:
	/usr/bin/python3 scripts/package.py

# The packaged plugin unpacked in build/plugins, for QGIS_PLUGINPATH.
stage:
	/usr/bin/python3 scripts/package.py --stage build/plugins

clean:
	rm -rf build dist demo_output .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
