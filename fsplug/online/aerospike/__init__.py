"""The Aerospike online store, by part: `config` (the `online_store` model), `connection` (the
client, connected in the background), `errors` (the one boundary where driver failures become
fsplug errors) and `store` (`AerospikeOnlineStore`: layout, reads, writes, teardown, state).

Importing this package does not import the `aerospike` driver: only connecting does.
"""

from fsplug.online.aerospike.config import AerospikeConfig, TLSConfig, parse_host
from fsplug.online.aerospike.store import AerospikeOnlineStore, encode_key

__all__ = ["AerospikeConfig", "TLSConfig", "AerospikeOnlineStore", "encode_key", "parse_host"]
