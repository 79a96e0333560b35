"""``python -m fsplug.testing.aerospike_server --port 3000 --namespace test``"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args(argv)
    namespaces = args.namespaces or ["test"]
    kw = dict(nsup_period=args.nsup_period, default_ttl=args.default_ttl,
              max_record_size=args.max_record_size)
    if args.nodes > 1:
        ports = [args.port + i for i in range(args.nodes)] if args.port else None
        server = AerospikeTestCluster(args.nodes, namespaces, ports=ports, **kw).start()
        ports_text = ",".join(str(p) for p in server.ports)
    else:
        server = AerospikeTestServer(namespaces, port=args.port, **kw).start()
        ports_text = str(server.port)
    print(f"fsplug Aerospike test server: port {ports_text}, namespaces "
          f"{','.join(namespaces)}, listening on 127.0.0.1 only", flush=True)
    done = threading.Event()

    def _stop(*_):
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
