# Every target installs what it needs first, so it works on a fresh machine.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
SYSTEM_PYTHON ?= python3

.PHONY: demo lint test clean

demo: $(VENV)/.installed
	$(VENV)/bin/osintd --demo

# Lint and types first: they take seconds, the tests minutes.
test: lint $(VENV)/.installed tests/node/node_modules/.installed tests/browser/node_modules/.installed \
      tests/asyncapi/node_modules/.installed
	$(PYTHON) -m pytest -q

lint: $(VENV)/.installed
	$(PYTHON) -m ruff check osintd tests
	$(PYTHON) -m mypy

$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

tests/node/node_modules/.installed: tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

tests/browser/node_modules/.installed: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $@

tests/asyncapi/node_modules/.installed: tests/asyncapi/package.json tests/asyncapi/package-lock.json
	cd tests/asyncapi && npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) tests/node/node_modules tests/browser/node_modules tests/asyncapi/node_modules
