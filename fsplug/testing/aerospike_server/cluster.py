"""Several test nodes on distinct loopback ports that present themselves as one cluster."""

from __future__ import annotations

from collections.abc import Collection

from fsplug.testing.aerospike_server.server import AerospikeTestServer, build_namespaces
from fsplug.testing.aerospike_server.storage import Clock


class AerospikeTestCluster:
    """``nodes`` servers sharing one store; partition ``p`` is owned by node ``p % nodes``.

    Each node advertises the others through ``peers-clear-std`` and its own partitions through
    ``replicas`` (replication factor 1), so the real client routes single-record commands to the
    owning node and splits batches by node.  A node that receives a command for a partition it
    does not own serves it anyway from the shared store, as a real server would after proxying
    it to the owner.  ``stop_node(i)`` leaves node ``i`` listed as a peer and owning its
    partitions (a real cluster in the seconds before heartbeats notice), so the client keeps
    routing those keys to it and gets connection errors; ``stop_node(i, rebalance=True)`` instead
    has the other nodes drop it and take over its partitions (a cluster with replication factor
    2 or more after it re-balanced: every record stays readable).  ``start_node(i)`` restores the
    original ownership.  Peers and partition generations are bumped on every change, so the
    client re-reads ``peers-clear-std`` and ``replicas``.
    """

    def __init__(self, nodes: int = 3, namespaces=("test",), *, nsup_period=None,
                 default_ttl=None, max_record_size=None, ports=None,
                 cluster_name: str = "null", durable_delete: str = "refuse",
                 truncate_seconds: float | None = None):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if ports is not None and len(ports) != nodes:
            raise ValueError("give one port per node")
        self._clock = Clock()
        self.namespaces = build_namespaces(namespaces, self._clock, nsup_period=nsup_period,
                                           default_ttl=default_ttl,
                                           max_record_size=max_record_size,
                                           truncate_seconds=truncate_seconds)
        self.cluster_key = "C1A55E7C1A55"
        self.peers_generation = 1
        self._n = nodes
        self._owned: list[Collection[int]] = [range(i, 4096, nodes) for i in range(nodes)]
        self._dropped: set[int] = set()
        self.nodes = [
            AerospikeTestServer(port=(ports[i] if ports else 0), cluster_name=cluster_name,
                                durable_delete=durable_delete,
                                _shared=(self._clock, self.namespaces), _cluster=self, _index=i)
            for i in range(nodes)
        ]

    # -- view used by the nodes ----------------------------------------------------------------

    def partitions_of(self, index: int):
        return self._owned[index]

    def owner_of(self, digest: bytes) -> int:
        """Index of the node owning ``digest``'s partition (as currently advertised)."""
        pid = (int(digest[0]) | (int(digest[1]) << 8)) % 4096
        for i, owned in enumerate(self._owned):
            if pid in owned:
                return i
        raise LookupError(pid)

    def peers_of(self, node):
        return [n for i, n in enumerate(self.nodes) if n is not node and i not in self._dropped]

    def _assign(self) -> None:
        """Original ownership (p % nodes), with dropped nodes' partitions spread over the rest."""
        live = [i for i in range(self._n) if i not in self._dropped]
        owned: list[list[int]] = [[] for _ in range(self._n)]
        for p in range(4096):
            home = p % self._n
            owned[home if home not in self._dropped else live[p % len(live)]].append(p)
        self._owned = [frozenset(o) for o in owned]
        self.peers_generation += 1
        for n in self.nodes:
            n.partition_generation += 1

    def live_size(self) -> int:
        return sum(1 for n in self.nodes if n.running)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, keep_data: bool = False) -> AerospikeTestCluster:
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

    def __enter__(self) -> AerospikeTestCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop_node(self, i: int, rebalance: bool = False) -> None:
        """Stop node ``i`` (its port closes; its records stay in the shared store).

        ``rebalance=True``: the other nodes stop advertising it and take over its partitions.
        """
        self.nodes[i].stop()
        if rebalance:
            if len(self._dropped) + 1 >= self._n:
                raise ValueError("cannot re-balance away the last node")
            self._dropped.add(i)
            self._assign()

    def start_node(self, i: int) -> None:
        """Restart node ``i`` on its port; it owns its original partitions again."""
        self.nodes[i].start(keep_data=True)
        if i in self._dropped:
            self._dropped.discard(i)
            self._assign()

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
        """Move the shared server clock forward (TTL expiry, last-update times)."""
        self._clock.advance(seconds)

    def freeze_clock(self) -> None:
        """Stop the shared server clock of every node (see AerospikeTestServer.freeze_clock)."""
        self._clock.freeze()

    def unfreeze_clock(self) -> None:
        """Let the shared server clock run again."""
        self._clock.unfreeze()

    def truncating(self, namespace: str = "test") -> bool:
        """Whether a truncate in ``namespace`` is still in its ``truncating`` phase."""
        return self.namespaces[namespace].truncating()

    @property
    def stats(self) -> list[dict]:
        """Per-node command counters (``nodes[i].stats``)."""
        return [n.stats for n in self.nodes]

    def reset_stats(self) -> None:
        for n in self.nodes:
            n.reset_stats()
