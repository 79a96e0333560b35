"""Info protocol (proto type 1): newline-separated command names in, ``name\\tvalue\\n`` out."""

from __future__ import annotations

import base64

from fsplug.testing.aerospike_server.storage import CITRUSLEAF_EPOCH

UNRECOGNIZED = "ERROR::unrecognized command"

# Info commands of features this server does not implement: answered with an error that names
# the command and carries result code 16 (AEROSPIKE_ERR_UNSUPPORTED_FEATURE).
UNSUPPORTED_PREFIXES = (
    "sindex", "udf-", "query", "scan", "jobs", "job", "set-config", "config-set", "roster",
    "recluster", "xdr", "truncate-undo", "get-sl", "tip", "quiesce", "revive", "dump-",
    "log-set", "set-log", "index-pressure", "histogram", "latencies", "throughput",
)


def _kv(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip()
    return out


class InfoHandler:
    """Answers info commands for one node. ``node`` is the owning server (duck-typed)."""

    def __init__(self, node):
        self.node = node
        self._table = self._simple()

    def handle(self, body: bytes) -> bytes:
        text = bytes(body).decode("utf-8", "replace")
        names = [n for n in text.split("\n") if n]
        if not names:  # an empty request: a short summary, as a real node gives its defaults
            names = ["node", "build", "edition", "version", "partition-generation", "statistics"]
        return "".join(f"{n}\t{self.value(n)}\n" for n in names).encode()

    def _simple(self) -> dict:
        node = self.node
        return {
            "node": lambda: node.node_name,
            "build": lambda: node.build,
            "version": lambda: f"Aerospike Community Edition build {node.build}",
            "edition": lambda: "Aerospike Community Edition",
            "partition-generation": lambda: str(node.partition_generation),
            "peers-generation": lambda: str(node.peers_generation()),
            "peers-clear-std": lambda: node.peers_value(),
            "peers-clear-alt": lambda: node.peers_value(),
            "peers-tls-std": lambda: f"{node.peers_generation()},{node.port},[]",
            "peers-tls-alt": lambda: f"{node.peers_generation()},{node.port},[]",
            "replicas": lambda: self.replicas(),
            "replicas-master": lambda: self.replicas_master(),
            "partitions": lambda: "4096",
            "cluster-name": lambda: node.cluster_name,
            "rebalance-generation": lambda: "1",
            "namespaces": lambda: ";".join(node.namespaces),
            "sets": lambda: self.sets(None, None),
            "status": lambda: "ok",
            "service": lambda: f"127.0.0.1:{node.port}",
            "service-clear-std": lambda: f"127.0.0.1:{node.port}",
            "service-clear-alt": lambda: f"127.0.0.1:{node.port}",
            "services": lambda: node.services_value(),
            "services-alumni": lambda: node.services_value(),
            "statistics": lambda: self.statistics(),
            "features": lambda: "batch-any;batch-index;blob-bits;cdt-list;cdt-map;cluster-stable;"
                                "float;peers;pipelining;relaxed-sc;replicas;replicas-master;"
                                "truncate-namespace",
            "cluster-stable": lambda: node.cluster_key,
            "cluster-size": lambda: str(node.cluster_size()),
        }

    def value(self, name: str) -> str:
        node = self.node
        fn = self._table.get(name)
        if fn is not None:
            return fn()
        cmd, sep, params = name.partition(":")
        if sep:
            if cmd == "user-agent-set":
                return "ok"
            if cmd == "truncate":
                return self.truncate(_kv(params), namespace_only=False)
            if cmd == "truncate-namespace":
                return self.truncate(_kv(params), namespace_only=True)
            if cmd == "cluster-stable":
                return node.cluster_key
        if name.startswith("namespace/"):
            return self.namespace(name[len("namespace/"):])
        if name.startswith("sets/"):
            ns, _, set_name = name[len("sets/"):].partition("/")
            return self.sets(ns, set_name or None)
        if name.startswith("bins/") or name == "bins":
            return self.bins(name[5:] if "/" in name else None)
        if cmd.startswith(UNSUPPORTED_PREFIXES):
            node.count("unsupported")
            return (f"ERROR:16:command '{cmd}' is not supported by the fsplug Aerospike test "
                    f"server")
        return UNRECOGNIZED

    # -- partitions ----------------------------------------------------------------------------

    def _bitmap_b64(self) -> str:
        return base64.b64encode(node_bitmap(self.node.owned_partitions())).decode()

    def replicas(self) -> str:
        b64 = self._bitmap_b64()
        return ";".join(f"{ns}:0,1,{b64}" for ns in self.node.namespaces)

    def replicas_master(self) -> str:
        b64 = self._bitmap_b64()
        return ";".join(f"{ns}:{b64}" for ns in self.node.namespaces)

    # -- namespaces and sets -------------------------------------------------------------------

    def namespace(self, name: str) -> str:
        ns = self.node.namespaces.get(name)
        if ns is None:
            return "ERROR::namespace not found"
        objects = ns.count()
        items = [
            ("ns_cluster_size", self.node.cluster_size()), ("effective_replication_factor", 1),
            ("objects", objects), ("tombstones", 0), ("master_objects", objects),
            ("prole_objects", 0), ("truncate_lut", ns_truncate_lut_ms(ns)),
            ("replication-factor", 1), ("default-ttl", ns.default_ttl),
            ("nsup-period", ns.nsup_period), ("max-record-size", ns.max_record_size),
            ("allow-ttl-without-nsup", str(ns.allow_ttl_without_nsup).lower()),
            ("storage-engine", "memory"), ("strong-consistency", "false"),
            ("conflict-resolution-policy", "generation"), ("single-scope-set", "false"),
        ]
        return ";".join(f"{k}={v}" for k, v in items)

    def sets(self, ns_name: str | None, set_name: str | None) -> str:
        node = self.node
        if ns_name is not None and ns_name not in node.namespaces:
            return "ERROR::namespace not found"
        parts = []
        for name, ns in node.namespaces.items():
            if ns_name is not None and name != ns_name:
                continue
            for sname, objects, data_bytes, lut_ms in ns.set_stats():
                if set_name is not None and sname != set_name:
                    continue
                parts.append(
                    f"ns={name}:set={sname}:objects={objects}:tombstones=0:"
                    f"data_used_bytes={data_bytes}:truncate_lut={lut_ms}:sindexes=0:"
                    f"index_populating=false:truncating=false:default-read-touch-ttl-pct=0:"
                    f"default-ttl=0:disable-eviction=false:enable-index=false:"
                    f"stop-writes-count=0:stop-writes-size=0;")
        return "".join(parts)

    def bins(self, ns_name: str | None) -> str:
        parts = []
        for name, ns in self.node.namespaces.items():
            if ns_name is not None and name != ns_name:
                continue
            with ns.lock:
                names = sorted({b for r in ns.records.values() for b in r.bins})
            parts.append(f"{name}:bin_names={len(names)},bin_names_quota=65535,"
                         + ",".join(names) + ";")
        return "".join(parts)

    def statistics(self) -> str:
        node = self.node
        objects = sum(ns.count() for ns in node.namespaces.values())
        return (f"cluster_size={node.cluster_size()};cluster_key={node.cluster_key};"
                f"cluster_integrity=true;cluster_is_member=true;uptime={node.uptime()};"
                f"objects={objects};tombstones=0;client_connections={node.open_connections()}")

    # -- truncate ------------------------------------------------------------------------------

    def truncate(self, kv: dict, namespace_only: bool) -> str:
        ns_name = kv.get("namespace")
        if not ns_name:
            return "ERROR::namespace is required"
        ns = self.node.namespaces.get(ns_name)
        if ns is None:
            return "ERROR::namespace not found"
        set_name = None if namespace_only else (kv.get("set") or None)
        lut_ns = None
        if "lut" in kv and not namespace_only:
            try:
                lut_ns = int(kv["lut"])
            except ValueError:
                return "ERROR::bad lut"
            if lut_ns <= CITRUSLEAF_EPOCH * 1_000_000_000:
                return "ERROR::lut is before the citrusleaf epoch"
            if lut_ns > ns.clock.now_ns():
                return "ERROR::lut is in the future"
        ns.truncate(set_name, lut_ns)
        self.node.count("truncate")
        return "ok"


def ns_truncate_lut_ms(ns) -> int:
    from fsplug.testing.aerospike_server.storage import lut_ns_to_cl_ms

    return lut_ns_to_cl_ms(ns.truncate_lut_ns)


def node_bitmap(partitions) -> bytes:
    """512-byte bitmap, partition ``p`` at byte ``p >> 3``, bit ``0x80 >> (p & 7)``."""
    bm = bytearray(512)
    for p in partitions:
        bm[p >> 3] |= 0x80 >> (p & 7)
    return bytes(bm)
