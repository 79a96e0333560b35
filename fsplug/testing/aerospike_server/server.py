"""The TCP server: one listener thread, one thread per client connection (faults: faults.py)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter

from fsplug.testing.aerospike_server import protocol as P
from fsplug.testing.aerospike_server.engine import Engine, classify, classify_batch
from fsplug.testing.aerospike_server.faults import Drop, Faults
from fsplug.testing.aerospike_server.info import InfoHandler
from fsplug.testing.aerospike_server.storage import (
    DEFAULT_MAX_RECORD_SIZE, DEFAULT_TRUNCATE_SECONDS, Clock, Namespace,
)
import contextlib

log = logging.getLogger("fsplug.testing.aerospike_server")

MAX_MESSAGE_SIZE = 128 * 1024 * 1024
RECV_BUFFER = 16 * 1024
DEFAULT_BUILD = "8.1.2.0"

_ALL_PARTITIONS = range(4096)
_NS_KEYS = {"nsup_period", "default_ttl", "max_record_size", "allow_ttl_without_nsup",
            "truncate_seconds"}


def build_namespaces(namespaces, clock: Clock, *, nsup_period=None, default_ttl=None,
                     max_record_size=None, truncate_seconds=None) -> dict[str, Namespace]:
    """``namespaces`` as names, or ``{name: {setting: value}}``; keyword args are defaults."""
    defaults = {"nsup_period": 0, "default_ttl": 0, "max_record_size": DEFAULT_MAX_RECORD_SIZE,
                "truncate_seconds": DEFAULT_TRUNCATE_SECONDS}
    if nsup_period is not None:
        defaults["nsup_period"] = nsup_period
    if default_ttl is not None:
        defaults["default_ttl"] = default_ttl
    if max_record_size is not None:
        defaults["max_record_size"] = max_record_size
    if truncate_seconds is not None:
        if truncate_seconds < 0:
            raise ValueError("truncate_seconds must be >= 0")
        defaults["truncate_seconds"] = truncate_seconds
    if isinstance(namespaces, str):
        namespaces = [namespaces]
    items = namespaces.items() if isinstance(namespaces, dict) else ((n, {}) for n in namespaces)
    out = {}
    for name, given in items:
        settings = dict(given or {})
        unknown = set(settings) - _NS_KEYS
        if unknown:
            raise ValueError(f"unknown namespace setting(s) for {name!r}: {sorted(unknown)}")
        if not name or len(name) > 31 or any(c in name for c in ":;/\t\n"):
            raise ValueError(f"invalid namespace name {name!r}")
        out[name] = Namespace(name, clock, **{**defaults, **settings})
    if not out:
        raise ValueError("at least one namespace is required")
    return out


class _Conn:
    __slots__ = ("sock", "thread", "closed")

    def __init__(self, sock):
        self.sock = sock
        self.thread = None
        self.closed = False

    def close(self):
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class AerospikeTestServer:
    """A single-node Aerospike look-alike on 127.0.0.1. See the package docstring."""

    def __init__(self, namespaces=("test",), port: int = 0, *, nsup_period=None,
                 default_ttl=None, max_record_size=None, node_name: str | None = None,
                 build: str = DEFAULT_BUILD, cluster_name: str = "null",
                 durable_delete: str = "refuse", truncate_seconds: float | None = None,
                 _shared=None, _cluster=None, _index: int = 0):
        if _shared is not None:
            self._clock, self.namespaces = _shared
        else:
            self._clock = Clock()
            self.namespaces = build_namespaces(namespaces, self._clock, nsup_period=nsup_period,
                                               default_ttl=default_ttl,
                                               max_record_size=max_record_size,
                                               truncate_seconds=truncate_seconds)
        self.host = "127.0.0.1"
        self.port = int(port)
        self.build = build
        self.cluster_name = cluster_name
        self._fixed_node_name = node_name
        self._cluster = _cluster
        self._index = _index
        self.partition_generation = 0
        self.engine = Engine(self.namespaces, self._clock, durable_delete=durable_delete)
        self._info = InfoHandler(self)
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._conns: set[_Conn] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._running = False
        self._stopping = threading.Event()
        self.faults = Faults(self)
        self._started_at = time.monotonic()

    # ------------------------------------------------------------------------------------------
    # Identity and cluster view
    # ------------------------------------------------------------------------------------------

    @property
    def node_name(self) -> str:
        if self._fixed_node_name:
            return self._fixed_node_name
        return f"BB9{self.port & 0xFFFF:04X}000000{self._index & 0xFF:02X}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cluster_key(self) -> str:
        return "A1B2C3D4E5F6" if self._cluster is None else self._cluster.cluster_key

    def owned_partitions(self):
        if self._cluster is None:
            return _ALL_PARTITIONS
        return self._cluster.partitions_of(self._index)

    def peers_generation(self) -> int:
        return 0 if self._cluster is None else self._cluster.peers_generation

    def peers_value(self) -> str:
        gen = self.peers_generation()
        if self._cluster is None:
            return f"{gen},{self.port},[]"
        peers = ",".join(f"[{n.node_name},,[{n.address}]]" for n in self._cluster.peers_of(self))
        return f"{gen},{self.port},[{peers}]"

    def services_value(self) -> str:
        if self._cluster is None:
            return ""
        return ";".join(n.address for n in self._cluster.peers_of(self))

    def cluster_size(self) -> int:
        return 1 if self._cluster is None else self._cluster.live_size()

    def uptime(self) -> int:
        return int(time.monotonic() - self._started_at)

    # ------------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------------

    def start(self, keep_data: bool = False) -> AerospikeTestServer:
        """Start listening (the port chosen at first start is reused on restart).

        ``keep_data=False`` (default) empties the namespaces first, like restarting an in-memory
        server; ``keep_data=True`` keeps every record, as a server with persistent storage would.
        """
        if self._running:
            return self
        if not keep_data and self._cluster is None:
            for ns in self.namespaces.values():
                ns.clear()
        self.faults.reset()
        self._stopping.clear()
        self._open_listener()
        self._running = True
        self._started_at = time.monotonic()
        self._accept_thread = threading.Thread(target=self._accept_loop,
                                               name=f"aerospike-test-accept-{self.port}",
                                               daemon=True)
        self._accept_thread.start()
        log.info("aerospike test server %s listening on %s", self.node_name, self.address)
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and join every thread."""
        if not self._running and self._listener is None:
            return
        self._running = False
        self._stopping.set()
        self._close_listener()
        self.faults.wake()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        self.drop_connections()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            if c.thread is not None and c.thread is not threading.current_thread():
                c.thread.join(5)

    close = stop

    def __enter__(self) -> AerospikeTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._running

    def _open_listener(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            ls.bind((self.host, self.port or _free_port_outside_ephemeral_range(self.host)))
        except OSError:
            ls.close()
            raise
        ls.listen(256)
        self.port = ls.getsockname()[1]
        self._listener = ls

    def _close_listener(self) -> None:
        ls, self._listener = self._listener, None
        if ls is not None:
            with contextlib.suppress(OSError):
                ls.shutdown(socket.SHUT_RDWR)
            ls.close()

    def _accept_loop(self) -> None:
        while self._running:
            ls = self._listener
            if ls is None:
                if self.faults.refusing:
                    time.sleep(0.01)
                    continue
                break
            try:
                sock, _addr = ls.accept()
            except OSError:
                # The listener was closed under us: by refuse_connections (go on, maybe with the
                # listener it has already reopened: checking only the refusal flag here lost that race and
                # ended the loop, so the server never accepted again) or by stop (end).
                if self._running and (self.faults.refusing or self._listener is not ls):
                    continue
                break
            if not self._running:
                sock.close()
                break
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name=f"aerospike-test-conn-{self.port}")
            conn.thread = t
            with self._lock:
                self._conns.add(conn)
                self._stats["connections_opened"] += 1
            t.start()

    def _close_connections(self) -> int:
        with self._lock:
            conns = [c for c in self._conns if not c.closed]
        for c in conns:
            c.close()
        return len(conns)

    # ------------------------------------------------------------------------------------------
    # Fault injection: delegated to ``self.faults`` (faults.py)
    # ------------------------------------------------------------------------------------------

    def set_latency(self, seconds: float, commands=None) -> None:
        """Delay each answer by ``seconds``; see :meth:`Faults.set_latency`."""
        self.faults.set_latency(seconds, commands)

    def refuse_connections(self, refuse: bool = True) -> None:
        """Close (True) or reopen (False) the listening socket; see :meth:`Faults.refuse_connections`."""
        self.faults.refuse_connections(refuse)

    def drop_connections(self) -> int:
        """Close every open client connection now; returns how many were closed."""
        return self.faults.drop_connections()

    def pause(self) -> None:
        """Read requests but answer nothing until :meth:`resume`."""
        self.faults.pause()

    def resume(self) -> None:
        """Answer again after :meth:`pause`."""
        self.faults.resume()

    def fail_next(self, n: int = 1, commands=None, action="drop", after: int = 0) -> None:
        """Fail the next ``n`` data commands (after ``after`` of them); see :meth:`Faults.fail_next`."""
        self.faults.fail_next(n, commands, action, after)

    def clear_faults(self) -> None:
        """Undo every fault injection (latency, pause, refusal, pending failures)."""
        self.faults.clear_faults()

    # ------------------------------------------------------------------------------------------
    # Introspection
    # ------------------------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        """Counters: commands served by kind (get, put, exists, remove, touch, operate,
        batch_read, batch_write, batch_remove, info, scan, query, udf, security, unsupported),
        ``batch_keys`` (rows over all batches), ``connections_opened``, ``faults_injected``,
        ``compressed`` (compressed requests, refused with 25 as on Community Edition),
        ``truncate``."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._stats[kind] += n

    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns if not c.closed)

    def record_count(self, namespace: str = "test", set: str | None = None) -> int:  # noqa: A002
        """Live (unexpired, untruncated) records in ``namespace`` (optionally one set)."""
        return self.namespaces[namespace].count(set)

    def advance_clock(self, seconds: float) -> None:
        """Move the server clock forward (TTL expiry, last-update times)."""
        self._clock.advance(seconds)

    def freeze_clock(self) -> None:
        """Stop the server clock: every write and truncate lands in the same millisecond (until
        ``advance_clock`` or ``unfreeze_clock``). In a cluster this stops the shared clock."""
        self._clock.freeze()

    def unfreeze_clock(self) -> None:
        """Let the server clock run again (from wall time plus every ``advance_clock``)."""
        self._clock.unfreeze()

    def truncating(self, namespace: str = "test") -> bool:
        """Whether a truncate in ``namespace`` is still in its ``truncating`` phase."""
        return self.namespaces[namespace].truncating()

    def namespace_settings(self, namespace: str) -> dict:
        return self.namespaces[namespace].settings()

    # ------------------------------------------------------------------------------------------
    # Connection handling
    # ------------------------------------------------------------------------------------------

    def _serve(self, conn: _Conn) -> None:
        sock = conn.sock
        hdr = bytearray(8)
        hdr_mv = memoryview(hdr)
        buf = bytearray(RECV_BUFFER)
        try:
            while self._running and not conn.closed:
                if not _recv_exact(sock, hdr_mv, 8):
                    break
                version, ptype, size = P.parse_proto_header(hdr)
                if version != P.PROTO_VERSION or size > MAX_MESSAGE_SIZE:
                    log.warning("bad proto header version=%s size=%s; closing", version, size)
                    break
                if size > len(buf):
                    buf = bytearray(size)
                body = memoryview(buf)[:size]
                if not _recv_exact(sock, body, size):
                    break
                if self.faults.paused and not self.faults.wait_resumed(
                        lambda: self._running and not conn.closed):
                    break
                try:
                    self._dispatch(conn, ptype, body)
                except Drop:
                    break
                if len(buf) > 4 * RECV_BUFFER:
                    buf = bytearray(RECV_BUFFER)
        except OSError:
            pass
        except Exception:  # noqa: BLE001 - never let a connection thread die noisily
            log.exception("aerospike test server: error serving a connection")
        finally:
            conn.closed = True
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._conns.discard(conn)

    def _delay(self, kind: str, conn: _Conn) -> None:
        self.faults.delay(kind, lambda: not conn.closed, self._stopping)

    def _dispatch(self, conn: _Conn, ptype: int, body) -> None:
        sock = conn.sock
        if ptype == P.PROTO_TYPE_INFO:
            self.count("info")
            self._delay("info", conn)
            reply = self._info.handle(body)
            sock.sendall(P.proto_header(P.PROTO_TYPE_INFO, len(reply)) + reply)
            return
        if ptype == P.PROTO_TYPE_AS_MSG:
            self._as_msg(conn, body)
            return
        if ptype == P.PROTO_TYPE_AS_MSG_COMPRESSED:
            # Client-server compression is an Enterprise feature: a Community node does not
            # decompress the request and answers a plain AS_MSG with code 25 (proto_ce.c
            # as_proto_uncompress; the connection stays open). It never compresses a reply either.
            self.count("compressed")
            sock.sendall(self.engine.error_response(P.AS_ERR_ENTERPRISE_ONLY))
            return
        if ptype == P.PROTO_TYPE_SECURITY:
            # A Community server answers every security message "not supported" (code 51).
            self.count("security")
            resp = bytearray(16)
            resp[1] = P.AS_SEC_ERR_NOT_SUPPORTED
            sock.sendall(P.proto_header(P.PROTO_TYPE_SECURITY, 16) + bytes(resp))
            return
        log.warning("unknown proto type %s; closing connection", ptype)
        raise Drop

    def _as_msg(self, conn: _Conn, body) -> None:
        sock = conn.sock
        try:
            msg, _end = P.parse_msg(body)
        except P.ProtocolError as e:
            log.warning("unparsable AS_MSG (%s); answering PARAMETER", e)
            sock.sendall(self.engine.error_response(P.AS_ERR_PARAMETER, last=True))
            return
        kind = classify(msg)
        rows = None
        if kind == "batch":
            data = msg.fields.get(P.FIELD_BATCH_INDEX)
            if data is None:  # old BATCH_INDEX_WITH_SET protocol
                self.count("unsupported")
                sock.sendall(self.engine.error_response(P.AS_ERR_UNSUPPORTED_FEATURE, last=True))
                return
            try:
                _flags, rows = P.parse_batch_index(data)
            except P.ProtocolError as e:
                log.warning("unparsable batch (%s); answering PARAMETER", e)
                sock.sendall(self.engine.error_response(P.AS_ERR_PARAMETER, last=True))
                return
            kind = classify_batch(rows)
        with self._lock:
            self._stats[kind] += 1
            if rows is not None:
                self._stats["batch_keys"] += len(rows)
        self._delay(kind, conn)
        action = self.faults.take(kind)
        if action == "drop":
            raise Drop
        if isinstance(action, int):
            sock.sendall(self.engine.error_response(action, last=rows is not None))
            return
        if kind == "udf":
            log.warning("aerospike test server: %s is not supported (answered code 16)", kind)
            sock.sendall(self.engine.error_response(P.AS_ERR_UNSUPPORTED_FEATURE, last=True))
            return
        if kind in ("scan", "query"):
            self.engine.execute_query(msg, (lambda b: None) if action == "drop_after"
                                      else sock.sendall)
            if action == "drop_after":
                raise Drop
            return
        if rows is not None:
            if action == "drop_after":
                self.engine.execute_batch(msg, rows, lambda b: None)
                raise Drop
            self.engine.execute_batch(msg, rows, sock.sendall)
            return
        resp = self.engine.execute_single(msg)
        if action == "drop_after":
            raise Drop
        sock.sendall(resp)


def _recv_exact(sock, mv, n: int) -> bool:
    got = 0
    while got < n:
        k = sock.recv_into(mv[got:n], n - got)
        if k == 0:
            return False
        got += k
    return True


def _free_port_outside_ephemeral_range(host: str) -> int:
    """A free port below the kernel's ephemeral range, or 0 (any) when none is found.

    A listening port chosen by the kernel lies in the ephemeral range, so while the server is
    stopped or refusing, an outgoing connection anywhere on the machine (or a client's connect to
    the dead port, which can connect to itself) may take it, and restarting on the same port
    fails. Ports below the range are never handed out to outgoing connections.
    """
    import random

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    if low <= 10_000:
        return 0
    rng = random.Random()
    for _ in range(64):
        port = rng.randrange(10_000, low)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            probe.close()
    return 0
