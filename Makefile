# make run   - start one node in the foreground (clients on 4222, web console and monitoring on 8222)
# make test  - the default test suite (a few minutes)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: run test test-faults bench-smoke bench bench-mq9 clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mq9 serve --monitor $${MQ9_MONITOR:-127.0.0.1:8222}

test: $(STAMP)
	tests/run_suite.sh default --timeout=300 --ignore=tests/faults --ignore=tests/bench tests

test-faults: $(STAMP)
	tests/run_suite.sh faults --timeout=600 tests/faults

# the benchmark harness still runs (mq9 side, --quick): every workload completes, not a measurement
bench-smoke: $(STAMP)
	tests/run_suite.sh bench-smoke --timeout=1200 tests/bench

BENCH_STAMP = $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

# core NATS vs nats-server; add BENCH_ARGS="--cluster" for three nodes each
bench: $(BENCH_STAMP)
	$(PY) benchmarks/core_nats.py $(BENCH_ARGS)

# mq9 vs JetStream, 3-node clusters; e.g. make bench-mq9 BENCH_ARGS="--quick --nodes 1"
bench-mq9: $(BENCH_STAMP)
	$(PY) benchmarks/mq9_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data build *.egg-info
