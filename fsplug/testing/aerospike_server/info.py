"""Info protocol (proto type 1): newline-separated command names in, ``name\\tvalue\\n`` out."""

from __future__ import annotations

import base64

from fsplug.testing.aerospike_server.storage import CITRUSLEAF_EPOCH_MS

# Error replies carry the real node's result codes and texts (real-server-facts.md section 1);
# the client raises them as AerospikeError with that code.
UNRECOGNIZED = "ERROR:4:unrecognized command"
RELEASE_SHA = {"8.1.2.0": "68182105aaa20bce52e3a672e0ac896e84421f85"}

# Longest values a truncate command takes (truncate.c limits, as measured).
MAX_NAMESPACE_LEN = 31
MAX_SET_LEN = 63
MAX_LUT_LEN = 23

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
            "release": lambda: (f"edition=Aerospike Community Edition;version={node.build};"
                                f"os=debian12;arch=x86_64;sha={RELEASE_SHA.get(node.build, '')}"),
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
            return "type=unknown"
        objects = ns.objects()
        items = [
            ("ns_cluster_size", self.node.cluster_size()), ("effective_replication_factor", 1),
            ("objects", objects), ("tombstones", 0), ("master_objects", objects),
            ("prole_objects", 0), ("truncate_lut", ns.truncation.lut_cl_ms),
            ("replication-factor", 1), ("default-ttl", ns.default_ttl),
            ("nsup-period", ns.nsup_period), ("max-record-size", ns.max_record_size),
            ("allow-ttl-without-nsup", str(ns.allow_ttl_without_nsup).lower()),
            ("storage-engine", "memory"), ("strong-consistency", "false"),
            ("conflict-resolution-policy", "generation"),
        ]
        return ";".join(f"{k}={v}" for k, v in items)

    def sets(self, ns_name: str | None, set_name: str | None) -> str:
        """``sets``, ``sets/<ns>`` (one ``ns=..:set=..:`` entry per set) or ``sets/<ns>/<set>``
        (that set's fields alone, without the prefix, as a real node answers)."""
        node = self.node
        if ns_name is not None and ns_name not in node.namespaces:
            return "ns_type=unknown"
        parts = []
        for name, ns in node.namespaces.items():
            if ns_name is not None and name != ns_name:
                continue
            for sname, objects, data_bytes, lut_ms, truncating in ns.set_stats():
                if set_name is not None and sname != set_name:
                    continue
                prefix = "" if set_name is not None else f"ns={name}:set={sname}:"
                parts.append(
                    f"{prefix}objects={objects}:tombstones=0:"
                    f"data_used_bytes={data_bytes}:truncate_lut={lut_ms}:sindexes=0:"
                    f"index_populating=false:truncating={str(truncating).lower()}:"
                    f"default-read-touch-ttl-pct=0:default-ttl=0:disable-eviction=false:"
                    f"enable-index=false:stop-writes-count=0:stop-writes-size=0;")
        return "".join(parts)

    def statistics(self) -> str:
        node = self.node
        objects = sum(ns.objects() for ns in node.namespaces.values())
        return (f"cluster_size={node.cluster_size()};cluster_key={node.cluster_key};"
                f"cluster_integrity=true;cluster_is_member=true;uptime={node.uptime()};"
                f"objects={objects};tombstones=0;client_connections={node.open_connections()}")

    # -- truncate ------------------------------------------------------------------------------

    def truncate(self, kv: dict, namespace_only: bool) -> str:
        """``truncate:namespace=..;set=..[;lut=..]`` / ``truncate-namespace:namespace=..[;lut=..]``
        with the real node's checks, order and error texts."""
        ns_name = kv.get("namespace")
        if ns_name is None:
            return "ERROR:20:missing 'namespace'"
        if len(ns_name) > MAX_NAMESPACE_LEN:
            return "ERROR:20:'namespace' value too long"
        set_name = kv.get("set")
        if namespace_only:
            if set_name is not None:
                return "ERROR:4:unexpected set name"
        else:
            if set_name is None:
                return "ERROR:4:missing 'set'"
            if not set_name:
                return "ERROR:4:missing 'set' value"
            if len(set_name) > MAX_SET_LEN:
                return "ERROR:4:'set' value too long"
        ns = self.node.namespaces.get(ns_name)
        clock = next(iter(self.node.namespaces.values())).clock  # one clock for all of them
        lut_ms = None
        lut = kv.get("lut")
        if lut is not None:
            if not lut:
                return "ERROR:4:missing 'lut' value"
            if len(lut) > MAX_LUT_LEN:
                return "ERROR:4:'lut' value too long"
            # ns since the Unix epoch -> ms since the citrusleaf epoch, 0 up to the epoch itself
            cl_ms = max(0, strtoul(lut) // 1_000_000 - CITRUSLEAF_EPOCH_MS)
            if cl_ms == 0:
                return "ERROR:4:would truncate to 0"
            lut_ms = cl_ms + CITRUSLEAF_EPOCH_MS
            if lut_ms > clock.now_ms():
                return "ERROR:4:would truncate in the future"
        # A real node does not check the namespace (the truncate goes to its metadata store and
        # waits there for a namespace of that name): an unknown one answers "ok".
        if ns is not None:
            ns.truncate(None if namespace_only else set_name, lut_ms)
        self.node.count("truncate")
        return "ok"


def strtoul(text: str) -> int:
    """C's ``strtoul(text, NULL, 0)`` on a 64-bit machine: leading blanks, an optional sign,
    ``0x`` hex, ``0`` octal or decimal digits up to the first other character (none: 0); a
    value past 2**64 - 1 saturates and a minus sign negates modulo 2**64."""
    s = text.lstrip(" \t\n\v\f\r")
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    base = 10
    if s[:2].lower() == "0x" and s[2:3] and s[2:3] in "0123456789abcdefABCDEF":
        base, s = 16, s[2:]
    elif s[:1] == "0":
        base = 8
    digits = "0123456789abcdef"[:base]
    value = 0
    for ch in s.lower():
        d = digits.find(ch)
        if d < 0:
            break
        value = value * base + d
    if value > 0xFFFFFFFFFFFFFFFF:
        return 0xFFFFFFFFFFFFFFFF
    return (-value) & 0xFFFFFFFFFFFFFFFF if negative else value


def node_bitmap(partitions) -> bytes:
    """512-byte bitmap, partition ``p`` at byte ``p >> 3``, bit ``0x80 >> (p & 7)``."""
    bm = bytearray(512)
    for p in partitions:
        bm[p >> 3] |= 0x80 >> (p & 7)
    return bytes(bm)
