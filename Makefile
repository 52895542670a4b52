# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint dist docs bench soak clean

# The dev extra includes the web extra (syncpoint serve) and Playwright; the browser tests drive the system's
# Chromium (apt-get install chromium; .ci/run installs it when absent), never a downloaded browser.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/syncpoint demo

# mypy is strict on the examples too (pyproject's [tool.mypy]): they are what users copy.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples docs
	$(VENV)/bin/mypy src
	$(VENV)/bin/mypy examples

test: lint
	$(PY) -m pytest -q

# An sdist and a wheel in dist/, checked by twine. The wheel is built from the sdist, so the sdist is complete;
# a left-over src/*.egg-info would add the files its SOURCES.txt lists to the sdist, so it goes first.
dist: $(STAMP)
	rm -rf dist build src/*.egg-info
	$(PY) -m build
	$(VENV)/bin/twine check --strict dist/*

# The documentation site in site/: README.md as its home page, docs/*.md, and the API reference generated from
# the docstrings (mkdocs.yml); a broken link, anchor or docstring is an error.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) benchmarks/bench_sqlite.py
	$(PY) benchmarks/bench_postgres.py
	$(PY) benchmarks/bench_concurrency.py
	$(PY) benchmarks/bench_web.py
	$(PY) benchmarks/bench_distributed.py

soak: $(STAMP)
	$(PY) -m pytest -q -s -m "soak or fuzz" --run-soak tests/campaign

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build site
