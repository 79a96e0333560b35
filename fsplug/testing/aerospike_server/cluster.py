"""Several test nodes on distinct loopback ports that present themselves as one cluster."""

from __future__ import annotations

from fsplug.testing.aerospike_server.server import AerospikeTestServer, build_namespaces
from fsplug.testing.aerospike_server.storage import Clock


class AerospikeTestCluster:
    """``nodes`` servers sharing one store; partition ``p`` is owned by node ``p % nodes``.

    Each node advertises the others through ``peers-clear-std`` and its own partitions through
    ``replicas`` (replication factor 1), so the real client routes single-record commands to the
    owning node and splits batches by node.  A node that receives a command for a partition it
    does not own serves it anyway from the shared store, as a real server would after proxying
    it to the owner.  A stopped node stays listed as a peer (as a real cluster does until its
    heartbeat times out), so the client keeps routing that node's partitions to it and gets
    connection errors for those keys.
    """

    def __init__(self, nodes: int = 3, namespaces=("test",), *, nsup_period=None,
                 default_ttl=None, max_record_size=None, ports=None,
                 cluster_name: str = "null"):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if ports is not None and len(ports) != nodes:
            raise ValueError("give one port per node")
        self._clock = Clock()
        self.namespaces = build_namespaces(namespaces, self._clock, nsup_period=nsup_period,
                                           default_ttl=default_ttl,
                                           max_record_size=max_record_size)
        self.cluster_key = "C1A55E7C1A55"
        self.peers_generation = 1
        self._n = nodes
        self._owned = [range(i, 4096, nodes) for i in range(nodes)]
        self.nodes = [
            AerospikeTestServer(port=(ports[i] if ports else 0), cluster_name=cluster_name,
                                _shared=(self._clock, self.namespaces), _cluster=self, _index=i)
            for i in range(nodes)
        ]

    # -- view used by the nodes ----------------------------------------------------------------

    def partitions_of(self, index: int):
        return self._owned[index]

    def owner_of(self, digest: bytes) -> int:
        """Index of the node owning ``digest``'s partition."""
        return (int(digest[0]) | (int(digest[1]) << 8)) % 4096 % self._n

    def peers_of(self, node):
        return [n for n in self.nodes if n is not node]

    def live_size(self) -> int:
        return sum(1 for n in self.nodes if n.running)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, keep_data: bool = False) -> "AerospikeTestCluster":
        if not keep_data:
            for ns in self.namespaces.values():
                ns.clear()
        started = []
        try:
            for n in self.nodes:
                n.start(keep_data=True)
                started.append(n)
        except Exception:
            for n in started:
                n.stop()
            raise
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    close = stop

    def __enter__(self) -> "AerospikeTestCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop_node(self, i: int) -> None:
        """Stop node ``i`` (its port closes; its records stay in the shared store)."""
        self.nodes[i].stop()

    def start_node(self, i: int) -> None:
        """Restart node ``i`` on its port; it serves the records it had."""
        self.nodes[i].start(keep_data=True)

    # -- conveniences --------------------------------------------------------------------------

    @property
    def hosts(self) -> list[str]:
        return [n.address for n in self.nodes]

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def client_hosts(self) -> list[tuple[str, int]]:
        """``hosts`` in the form the ``aerospike`` client config takes."""
        return [(n.host, n.port) for n in self.nodes]

    def record_count(self, namespace: str = "test", set: str | None = None) -> int:  # noqa: A002
        return self.namespaces[namespace].count(set)

    def advance_clock(self, seconds: float) -> None:
        self._clock.advance(seconds)

    @property
    def stats(self) -> list[dict]:
        """Per-node command counters (``nodes[i].stats``)."""
        return [n.stats for n in self.nodes]

    def reset_stats(self) -> None:
        for n in self.nodes:
            n.reset_stats()
