# make run   - start one node in the foreground (client port 4222)
# make test  - the default test suite (a few minutes)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: run test test-cluster test-faults bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mq9 serve

test: $(STAMP)
	$(PY) -m pytest -q -x --timeout=300 tests

bench: $(STAMP)
	$(PY) benchmarks/core_nats.py

clean:
	rm -rf $(VENV) data build *.egg-info
