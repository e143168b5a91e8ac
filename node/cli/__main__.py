"""`python -m node.cli ...` runs the `mq9` command (tests and benchmarks start nodes so)."""

from node.cli.main import app

app(prog_name="mq9")
