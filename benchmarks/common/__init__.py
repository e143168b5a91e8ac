"""What core_nats.py and mq9_bench.py share: the command line, installs, ports, machine facts.

Here too, the paths every module of the benchmarks uses.
"""

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent   # benchmarks/
REPO = BENCH.parent
BIN = BENCH / "bin"                               # natsbench, built here
OUT = BENCH / "out"                               # reports, flame graphs, plots
NATSBENCH_SRC = BENCH / "natsbench.c"
NATSBENCH = BIN / "natsbench"
