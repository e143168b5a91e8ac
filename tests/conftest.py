"""Fixtures: real node processes, their logs on failure."""

from __future__ import annotations

import pytest

from tests.nodes import NodeProcess, cluster_of

_started: list[NodeProcess] = []


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for node in _started:
            report.sections.append((f"log of node {node.name}", node.log_tail(80)))


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> NodeProcess:
    """One node for a whole test module."""
    n = NodeProcess(tmp_path_factory.mktemp("node"), "n1").start()
    _started.append(n)
    yield n
    n.kill()
    _started.remove(n)


@pytest.fixture
def make_node(tmp_path):
    """Factory for nodes owned by one test; all are killed at its end."""
    mine: list[NodeProcess] = []

    def make(name: str = "n1", **kwargs) -> NodeProcess:
        n = NodeProcess(tmp_path, name, **kwargs)
        mine.append(n)
        _started.append(n)
        return n

    yield make
    for n in mine:
        n.kill()
        _started.remove(n)


@pytest.fixture
def make_cluster(tmp_path):
    """Factory for a cluster owned by one test: make_cluster(3) -> started nodes; all killed at the end."""
    mine: list[NodeProcess] = []

    def make(n: int = 3, start: bool = True, **kwargs) -> list[NodeProcess]:
        nodes = cluster_of(tmp_path, n, **kwargs)
        mine.extend(nodes)
        _started.extend(nodes)
        if start:
            for node in nodes:
                node.start(wait=False)
            for node in nodes:
                node.wait_ready()
        return nodes

    yield make
    for n in mine:
        n.kill()
        _started.remove(n)
