"""``python -m fsplug.testing.aerospike_server --port 3000 --namespace test``"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from fsplug.testing.aerospike_server import AerospikeTestCluster, AerospikeTestServer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fsplug.testing.aerospike_server",
                                 description="fsplug's wire-compatible Aerospike test server "
                                             "(listens on 127.0.0.1 only).")
    ap.add_argument("--port", type=int, default=3000, help="port (0 = ephemeral; default 3000); "
                    "with --nodes N, the first of N consecutive ports")
    ap.add_argument("--namespace", action="append", dest="namespaces",
                    help="namespace name (repeatable; default: test)")
    ap.add_argument("--nsup-period", type=int, default=0,
                    help="nsup-period in seconds (default 0: writes with a TTL are refused)")
    ap.add_argument("--default-ttl", type=int, default=0, help="default-ttl in seconds (0 = never)")
    ap.add_argument("--max-record-size", type=int, default=1024 * 1024)
    ap.add_argument("--nodes", type=int, default=1, help="run a cluster of N nodes")
    ap.add_argument("--truncate-seconds", type=float, default=None,
                    help="how long a truncate stays in its 'truncating' phase, its records "
                         "still counted in objects (default 0.05)")
    ap.add_argument("--durable-delete", choices=("refuse", "accept"), default="refuse",
                    help="refuse durable deletes with code 25 as Community Edition does "
                         "(default), or accept them")
    ap.add_argument("--namespaces-json", help="namespaces with settings, as JSON "
                    "(overrides --namespace)")
    ap.add_argument("--control", action="store_true",
                    help="accept JSON control commands on stdin (used by spawn_server())")
    args = ap.parse_args(argv)
    namespaces = args.namespaces or ["test"]
    if args.namespaces_json:
        namespaces = json.loads(args.namespaces_json)
    kw = dict(nsup_period=args.nsup_period, default_ttl=args.default_ttl,
              max_record_size=args.max_record_size, truncate_seconds=args.truncate_seconds,
              durable_delete=args.durable_delete)
    # Handlers first: a SIGTERM right after the "listening" line must still stop cleanly.
    done = threading.Event()

    def _stop(*_):
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server: AerospikeTestCluster | AerospikeTestServer
    if args.nodes > 1:
        ports = [args.port + i for i in range(args.nodes)] if args.port else None
        cluster = AerospikeTestCluster(args.nodes, namespaces, ports=ports, **kw).start()
        ports_text = ";".join(str(p) for p in cluster.ports)
        server = cluster
    else:
        single = AerospikeTestServer(namespaces, port=args.port, **kw).start()
        ports_text = str(single.port)
        server = single
    print(f"fsplug Aerospike test server: port {ports_text}, namespaces "
          f"{','.join(map(str, namespaces))}, listening on 127.0.0.1 only", flush=True)
    if args.control:
        threading.Thread(target=_control_loop, args=(server, done), daemon=True).start()
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


# Methods a controlling process may call (see remote.py); "node" selects a cluster node.
_SERVER_METHODS = {"set_latency", "refuse_connections", "drop_connections", "pause", "resume",
                   "fail_next", "clear_faults", "reset_stats", "record_count", "advance_clock",
                   "freeze_clock", "unfreeze_clock", "truncating", "open_connections", "stop",
                   "start"}
_CLUSTER_METHODS = {"stop_node", "start_node", "record_count", "advance_clock", "freeze_clock",
                    "unfreeze_clock", "truncating", "reset_stats"}


def _control_loop(server, done) -> None:
    """One JSON request per stdin line, one JSON reply per stdout line. EOF stops the server."""
    for line in sys.stdin:
        try:
            req = json.loads(line)
            method, node = req["method"], req.get("node")
            a, kw = req.get("args", []), req.get("kwargs", {})
            if method == "stats":
                target = server if node is None else server.nodes[node]
                result = target.stats
            elif node is None and isinstance(server, AerospikeTestCluster):
                if method not in _CLUSTER_METHODS:
                    raise ValueError(f"unknown cluster method {method!r}")
                result = getattr(server, method)(*a, **kw)
            else:
                if method not in _SERVER_METHODS:
                    raise ValueError(f"unknown server method {method!r}")
                target = server if node is None else server.nodes[node]
                if method == "fail_next" and isinstance(kw.get("commands"), list):
                    kw["commands"] = set(kw["commands"])
                if method == "set_latency" and isinstance(kw.get("commands"), list):
                    kw["commands"] = set(kw["commands"])
                result = getattr(target, method)(*a, **kw)
                if method in ("start", "stop"):
                    result = None
            reply = {"ok": True, "result": result}
        except Exception as e:  # noqa: BLE001 - reported to the controller
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
    done.set()


if __name__ == "__main__":
    sys.exit(main())
