"""mq9_bench.py's parts: what is run (plan), the clusters, the client runner, the workloads,
the phases, the report, and the run that ties them.

`console` is the one console every module here prints to (140 wide into a file or pipe).
"""

from benchmarks.common.cli import console_for

console = console_for(140)
