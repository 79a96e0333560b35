"""Fixtures for the Aerospike test server's own tests."""

from __future__ import annotations

import contextlib

import aerospike
import pytest

from fsplug.testing.aerospike_server import AerospikeTestCluster, AerospikeTestServer


# Small timeouts so a failure is quick rather than a hang.
TIMEOUT_MS = 1500


def client_config(hosts, **overrides) -> dict:
    cfg = {
        "hosts": list(hosts),
        "timeout": TIMEOUT_MS,  # connect/tend
        "tend_interval": 250,
        "policies": {
            "total_timeout": TIMEOUT_MS,
            "read": {"total_timeout": TIMEOUT_MS, "max_retries": 0},
            "write": {"total_timeout": TIMEOUT_MS, "max_retries": 0},
            "operate": {"total_timeout": TIMEOUT_MS, "max_retries": 0},
            "remove": {"total_timeout": TIMEOUT_MS, "max_retries": 0},
            "batch": {"total_timeout": TIMEOUT_MS, "max_retries": 0},
            "info": {"timeout": TIMEOUT_MS},
        },
    }
    cfg.update(overrides)
    return cfg


def hosts_of(target):
    if isinstance(target, AerospikeTestCluster):
        return target.client_hosts()
    return [(target.host, target.port)]


@pytest.fixture
def server():
    with AerospikeTestServer(["test", "other"]) as srv:
        yield srv


@pytest.fixture
def make_client():
    clients = []

    def _make(target, **overrides):
        c = aerospike.client(client_config(hosts_of(target), **overrides)).connect()
        clients.append(c)
        return c

    yield _make
    for c in clients:
        with contextlib.suppress(Exception):  # already closed
            c.close()


@pytest.fixture
def client(server, make_client):
    return make_client(server)


@pytest.fixture
def cluster():
    with AerospikeTestCluster(nodes=3, namespaces=["test"]) as c:
        yield c
