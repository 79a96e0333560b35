"""A wire-compatible Aerospike test server (single process, stdlib only).

It speaks enough of Aerospike's wire protocol that the official ``aerospike`` Python client
(C client inside) cannot tell it from an Aerospike CE 8.1 node for the commands fsplug uses.
Think moto's server mode or DynamoDB Local.  It listens on 127.0.0.1 only.

Quick start::

    from fsplug.testing.aerospike_server import AerospikeTestServer
    import aerospike

    with AerospikeTestServer(namespaces=["test"]) as srv:
        client = aerospike.client({"hosts": [("127.0.0.1", srv.port)]}).connect()
        client.put(("test", "demo", 1), {"x": 1})

or as a program: ``python -m fsplug.testing.aerospike_server --port 3000 --namespace test``.

Server
------
``AerospikeTestServer(namespaces=("test",), port=0, *, nsup_period=None, default_ttl=None,
max_record_size=None, node_name=None, build="8.1.2.0", cluster_name="null",
durable_delete="accept")``

* ``namespaces``: names (``["test", "other"]``) or ``{name: settings}`` where settings may hold
  ``nsup_period`` (default 0), ``default_ttl`` (default 0 = never expire), ``max_record_size``
  (default 1 MiB) and ``allow_ttl_without_nsup`` (default False).  The keyword arguments give
  defaults for every namespace.  As on a real server, while ``nsup_period`` is 0 a write whose
  TTL is a number of seconds (or "namespace default" when ``default_ttl`` is not 0) is refused
  with code 22; TTL -1 (never expire), -2 (don't update) and 0 with ``default_ttl`` 0 pass.
* ``durable_delete``: ``"accept"`` (default) deletes as usual when the client sets the durable
  delete flag; ``"refuse"`` answers code 25 (AEROSPIKE_ERR_ENTERPRISE_ONLY) as a real Community
  server does (its CE write path refuses durable deletes).
* ``port=0`` picks an ephemeral port, kept across ``stop()``/``start()``; ``srv.port``,
  ``srv.address`` ("127.0.0.1:PORT"), ``srv.node_name``.
* ``start(keep_data=False)`` / ``stop()`` / context manager.  ``start`` after ``stop`` reuses the
  port; ``keep_data=True`` keeps the records (like persistent storage), the default empties the
  namespaces (like an in-memory namespace).  ``stop`` closes the listener and every connection
  and joins all threads.

Introspection: ``srv.stats`` (dict of counters: one per command kind - ``get``, ``put``,
``exists``, ``remove``, ``touch``, ``operate``, ``batch_read``, ``batch_write``,
``batch_remove``, ``info``, ``scan``, ``query``, ``udf``, ``security``, ``unsupported`` - plus
``batch_keys``, ``connections_opened``, ``faults_injected``, ``compressed``, ``truncate``),
``srv.reset_stats()``,
``srv.record_count(namespace="test", set=None)``, ``srv.open_connections()``,
``srv.advance_clock(seconds)`` (moves the server clock: TTLs expire without sleeping).

Command kinds: a single-record message is ``get`` (read all or selected bins), ``exists``
(metadata-only read), ``put`` (write ops only), ``remove``, ``touch`` or ``operate`` (anything
else); a batch is ``batch_read`` (every row reads), ``batch_remove`` (every row deletes) or
``batch_write``.  Note that the client sends a ``batch_write``/``batch_read`` of a single key
as a single-record command (so it counts as ``put``/``get``...).

Fault injection
---------------
* ``srv.set_latency(seconds, commands=None)``: delay each answer.  ``commands=None`` means every
  data command (not info); otherwise a set of kinds, ``"batch"`` for any batch, ``"info"``,
  ``"all"``.  ``set_latency(0)`` turns it off.
* ``srv.refuse_connections(True/False)``: close the listening socket (ECONNREFUSED) / reopen it
  on the same port.  Open connections are not touched.
* ``srv.drop_connections()``: close every open client connection (including the client's tend
  connection); returns how many.
* ``srv.pause()`` / ``srv.resume()``: keep accepting and reading but answer nothing; answers
  resume (for connections the client has not given up on) after ``resume()``.
* ``srv.fail_next(n=1, commands=None, action="drop")``: the next ``n`` data commands of the given
  kinds (None = any) fail: ``"drop"`` closes the connection without executing, ``"drop_after"``
  executes then closes without answering, an ``int`` answers that result code without executing
  (a batch gets a single error message flagged LAST).  Rules queue up.
* ``srv.clear_faults()`` undoes all of the above.
* ``srv.stop()`` then ``srv.start(keep_data=True)`` restarts on the same port with the data
  (``start()`` alone restarts empty); the client reconnects by itself.

Storage semantics: records keyed by (namespace, digest), set name kept; generation counts
(16-bit, wrapping to 1); a TTL is an expiry time checked on every access; ``truncate`` drops
records last updated at or before its ``lut`` (default now); record size is estimated after the
real flat storage format (``storage.Record.size``) and compared with ``max_record_size``.
Responses carry no KEY field (the real server returns stored keys only to scans and queries).

Cluster
-------
``AerospikeTestCluster(nodes=3, namespaces=("test",), *, nsup_period=None, default_ttl=None,
max_record_size=None, ports=None, cluster_name="null", durable_delete="accept")`` runs ``nodes``
servers on distinct loopback ports sharing one store. Partition ``p`` (the first two digest bytes,
little-endian, mod 4096, as the client computes it) belongs to node ``p % nodes``; nodes advertise
each other (``peers-clear-std``) and their partitions (``replicas``), so the client routes keys to
owners and splits batches by node. A node asked for a partition it does not own serves it (a real
server would proxy it to the owner). ``cluster.hosts`` ("127.0.0.1:port" strings),
``cluster.client_hosts()`` (tuples), ``cluster.nodes[i]`` (each an ``AerospikeTestServer`` with its
own fault injection and stats), ``cluster.stop_node(i, rebalance=False)`` /
``cluster.start_node(i)`` (a stopped node stays advertised as a peer owning its partitions, so the
client gets connection errors for its keys; with ``rebalance=True`` the other nodes drop it and take
its partitions over, like a cluster with replication factor 2+ after re-balancing),
``cluster.owner_of(digest)``, ``cluster.record_count(...)``, ``cluster.advance_clock(...)``,
``cluster.stats`` (list of per-node dicts).

Out of process
--------------
An in-process server shares the GIL with the client.  A client call that keeps the GIL while it
waits (``client.truncate()`` in aerospike 19.x) is then never answered and times out; send the
same info command with ``client.info_all("truncate:namespace=..;set=..")`` instead, or run the
server in a child process: ``spawn_server(namespaces=..., nodes=1, nsup_period=0, default_ttl=0,
max_record_size=1 MiB)`` (in ``fsplug.testing.aerospike_server.remote``) returns a handle with
``port``/``ports``/``hosts``/``client_hosts()``, the same fault-injection methods, ``stats``,
``record_count``, ``advance_clock``, ``stop_node``/``start_node`` and ``node(i)`` for one cluster
node, forwarded over the child's stdin/stdout.  Latency measured against a child process is also
free of GIL contention (still a functional server: label such numbers accordingly).

Supported
---------
Info: ``node``, ``build``, ``version``, ``edition``, ``features``, ``status``,
``partition-generation``, ``peers-generation``, ``peers-clear-std``/``-alt``, ``peers-tls-*``,
``replicas``, ``replicas-master``, ``partitions``, ``service*``, ``services``,
``cluster-name``, ``cluster-stable``, ``rebalance-generation``, ``statistics``,
``user-agent-set:value=...``, ``namespaces``, ``namespace/<ns>``, ``sets``, ``sets/<ns>``,
``sets/<ns>/<set>``, ``bins/<ns>``, ``truncate:namespace=..[;set=..][;lut=..]``,
``truncate-namespace:namespace=..``.  Unknown commands answer ``ERROR::unrecognized command``;
known but unsupported ones (sindex-*, udf-*, query/scan/job commands...) answer
``ERROR:16:command '<name>' is not supported by the fsplug Aerospike test server``.

Data: put/get/select/exists/remove/touch/operate (read, write, bin delete by nil, incr,
append, prepend, touch, delete-all), exists policies, generation policies, key send (stored),
TTLs with expiry on read, batch read/write/operate/remove with per-row policies and results,
filter expressions (see ``expressions``) on single and batch commands, particle types integer,
double, string, blob (and language blobs), bool, list, map (stored as sent, byte for byte),
GeoJSON and HLL stored opaquely; the map CDT operations a key-value feature store uses (map
put/put-items, get by key/key list, nested by map-key context: see ``cdt``, whose behaviour is
not confirmed by the capture).  Not supported, answered with code 16
(AEROSPIKE_ERR_UNSUPPORTED_FEATURE): scans, queries, UDFs, other CDT, bit, HLL and expression operations;
security messages get code 51 (security not supported), as from a Community server.
"""

from fsplug.testing.aerospike_server.cluster import AerospikeTestCluster
from fsplug.testing.aerospike_server.remote import spawn_server
from fsplug.testing.aerospike_server.server import AerospikeTestServer

__all__ = ["AerospikeTestServer", "AerospikeTestCluster", "spawn_server"]
