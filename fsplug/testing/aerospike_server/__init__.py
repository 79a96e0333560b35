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
durable_delete="refuse", truncate_seconds=None)``

* ``namespaces``: names (``["test", "other"]``) or ``{name: settings}`` where settings may hold
  ``nsup_period`` (default 0), ``default_ttl`` (default 0 = never expire), ``max_record_size``
  (default 1 MiB), ``allow_ttl_without_nsup`` (default False) and ``truncate_seconds`` (default
  0.05: how long a truncate stays in its ``truncating`` phase).  The keyword arguments give
  defaults for every namespace.  As on a real server, while ``nsup_period`` is 0 a write whose
  TTL is a number of seconds (or "namespace default" when ``default_ttl`` is not 0) is refused
  with code 22; TTL -1 (never expire), -2 (don't update) and 0 with ``default_ttl`` 0 pass.
* ``durable_delete``: ``"refuse"`` (default) answers code 25 (AEROSPIKE_ERR_ENTERPRISE_ONLY) as a
  real Community node does, before it looks at the record, its generation or the filter (a write
  that would delete the record answers 2 when there is none, else 25); ``"accept"`` deletes as
  usual when the client sets the durable delete flag.
* ``truncate_seconds``: see below (Truncate).
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
``srv.advance_clock(seconds)`` (moves the server clock: TTLs expire without sleeping),
``srv.freeze_clock()`` / ``srv.unfreeze_clock()`` (stop the server clock: every write and truncate
lands in the same millisecond until it is advanced or unfrozen), ``srv.truncating(namespace)``
(a truncate is still in its ``truncating`` phase).  Fault injection is implemented in
``faults.py`` (``srv.faults``); the methods below are the server's delegates.

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
(16-bit, wrapping to 1); a TTL is an expiry time checked on every access; last-update times
have ms resolution (``LastUpdateTime`` is a multiple of 1,000,000 ns).  The stored size is the
real flat format's (``storage.Record.flat_size``: 35-byte header, set name, stored key, void
time, bin count, per-bin name and particle) plus a 4-byte end mark in 16-byte blocks: that is
``RecordSize``/``MemorySize`` and the set's ``data_used_bytes``; a write is refused with 13 when
``flat + 4 > max_record_size``.  Responses carry no KEY field (the real server returns stored keys
only to scans and queries).

Truncate
--------
As on a real node: ``truncate`` stores the set's (``truncate-namespace``: the namespace's) lut in
ms, now by default; a record is removed only if it was last updated in an earlier millisecond,
so a record written in the truncate's own millisecond survives it for good, and so do writes
after it.  Reads miss the truncated records as soon as ``ok`` is sent; the ``objects`` counts
(``sets``, ``namespace/<ns>``, ``statistics``) keep them, with ``truncating=true``, for
``truncate_seconds`` of real time, then they are gone (a real node walks its index meanwhile:
about 110 ms for a million records).  ``srv.record_count`` counts what reads see.  ``lut=`` is
parsed as C's ``strtoul(text, NULL, 0)`` (decimal, ``0x`` hex, octal; garbage is 0) and refused
with the real texts (``would truncate to 0``, ``would truncate in the future``, ``'lut' value too
long``, ``missing 'lut' value``).  A truncate of an unknown namespace answers ``ok``.

Cluster
-------
``AerospikeTestCluster(nodes=3, namespaces=("test",), *, nsup_period=None, default_ttl=None,
max_record_size=None, ports=None, cluster_name="null", durable_delete="refuse",
truncate_seconds=None)`` runs ``nodes``
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
``cluster.freeze_clock()`` / ``cluster.unfreeze_clock()`` / ``cluster.truncating(ns)`` (the nodes
share one store and one clock), ``cluster.stats`` (list of per-node dicts).  Its
``durable_delete`` (default ``"refuse"``) and ``truncate_seconds`` work as for one server.

Out of process
--------------
An in-process server shares the GIL with the client.  A client call that keeps the GIL while it
waits (``client.truncate()`` in aerospike 19.x) is then never answered and times out; send the
same info command with ``client.info_all("truncate:namespace=..;set=..")`` instead, or run the
server in a child process: ``spawn_server(namespaces=..., nodes=1, nsup_period=0, default_ttl=0,
max_record_size=1 MiB, truncate_seconds=None, durable_delete="refuse")`` (in
``fsplug.testing.aerospike_server.remote``) returns a handle with
``port``/``ports``/``hosts``/``client_hosts()``, the same fault-injection methods, ``stats``,
``record_count``, ``advance_clock``, ``freeze_clock``/``unfreeze_clock``, ``truncating``,
``stop_node``/``start_node`` and ``node(i)`` for one cluster
node, forwarded over the child's stdin/stdout.  Latency measured against a child process is also
free of GIL contention (still a functional server: label such numbers accordingly).

Supported
---------
Info: ``node``, ``build``, ``version``, ``edition``, ``features``, ``status``,
``partition-generation``, ``peers-generation``, ``peers-clear-std``/``-alt``, ``peers-tls-*``,
``replicas``, ``replicas-master``, ``partitions``, ``service*``, ``services``,
``cluster-name``, ``cluster-stable``, ``rebalance-generation``, ``statistics``,
``user-agent-set:value=...``, ``namespaces``, ``namespace/<ns>``, ``sets``, ``sets/<ns>``,
``sets/<ns>/<set>`` (without the ``ns=..:set=..:`` prefix, as a real node answers), ``release``,
``truncate:namespace=..;set=..[;lut=..]``, ``truncate-namespace:namespace=..[;lut=..]``.  Errors
are the real node's ``ERROR:<code>:<text>`` (``ERROR:4:unrecognized command`` for unknown
commands, also ``bins`` and ``cluster-size``, which CE 8.1 does not know; ``ERROR:4:missing
'set'`` for a truncate without a set; ``ERROR:4:unexpected set name`` for a truncate-namespace
with one; ``ERROR:20:missing 'namespace'``); an unknown namespace gives ``type=unknown``
(``namespace/``) and ``ns_type=unknown`` (``sets/``).  Known but unsupported commands (sindex-*,
udf-*, query/scan/job commands, truncate-undo...) answer ``ERROR:16:command '<name>' is not
supported by the fsplug Aerospike test server``.

Data: put/get/select/exists/remove/touch/operate (read, write, bin delete by nil, incr,
append, prepend, touch, delete-all), exists policies, generation policies, key send (stored),
TTLs with expiry on read, batch read/write/operate/remove with per-row policies and results
(reply messages of at most 131,040 body bytes, then a LAST message of its own, as a real node
frames them; a batch-level filter that does not build fails the batch with one code-4 message
flagged LAST), filter expressions (see ``expressions``: comparisons, and/or/not, bins and
record metadata, ``DigestMod`` on digest bytes 16-19) on single and batch commands, particle
types integer,
double, string, blob (and language blobs), bool, list, map (stored as sent, byte for byte),
GeoJSON and HLL stored opaquely; the map CDT operations a key-value feature store uses (map
put/put-items, get by key/key list, nested by map-key context: see ``cdt``; key-ordered maps
are stored behind the real ordered-map header and KEY_VALUE reads answer the flat ``[k1, v1,
...]`` list a real node gives); scans and queries without a secondary-index filter (a set or
the whole namespace, by partition and resume digest, bin selection, metadata only, max records,
filter expression; records framed as a real node sends them: see ``query``), while a query
filtered on a bin answers 201 (index not found: there are no secondary indexes).  Not
supported, answered with code 16 (AEROSPIKE_ERR_UNSUPPORTED_FEATURE): UDFs and background
queries, other CDT, bit, HLL and expression operations, expression calls other than the ones
listed (arithmetic, bit operations, regex, cond/let...); security messages get code 51
(security not supported), and compressed requests (proto type 4, a client's ``compress``
policy on a command over 128 bytes) code 25 (AEROSPIKE_ERR_ENTERPRISE_ONLY, connection kept),
as from a Community server, which never compresses a reply either.

Confirmed against a real CE 8.1.2.0 node: the capture (``tests/aerospike_server/test_replay.py``)
and the measurements in ``real-server-facts.md`` (``test_real_node.py``) for everything above.
Not confirmed: the behaviour of a cluster of these nodes beyond the info replies of a real
cluster, and CDT behaviour beyond the cases the facts list.
"""

from fsplug.testing.aerospike_server.cluster import AerospikeTestCluster
from fsplug.testing.aerospike_server.remote import spawn_server
from fsplug.testing.aerospike_server.server import AerospikeTestServer

__all__ = ["AerospikeTestServer", "AerospikeTestCluster", "spawn_server"]
