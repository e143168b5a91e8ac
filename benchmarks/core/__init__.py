"""core_nats.py's parts: the workloads, the servers and clusters they run against, the run and its table."""
