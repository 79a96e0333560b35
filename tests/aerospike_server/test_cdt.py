"""Map CDT operations of the test server: the subset Feast's Aerospike online store uses, driven
by the official client (requests as it encodes them), and the refusal of everything else."""

from __future__ import annotations

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers import cdt_ctx
from aerospike_helpers.batch.records import BatchRecords, Write
from aerospike_helpers.operations import map_operations as map_ops
from aerospike_helpers.operations import operations as ops

ORDERED = {"map_order": aerospike.MAP_KEY_ORDERED}
K = ("test", "cdt", b"\x01entity")


def test_put_items_put_and_reads(server, make_client):
    c = make_client(server)
    _, _, bins = c.operate(K, [map_ops.map_put_items("features", {"fv": {"b": 2.5, "a": 1, "s": "x"}},
                                                     map_policy=ORDERED),
                               map_ops.map_put("event_ts", "fv", 1700, map_policy=ORDERED),
                               ops.write("created", 5)])
    assert bins == {"features": 1, "event_ts": 1, "created": None}  # map sizes; a write answers null
    c.operate(K, [map_ops.map_put("event_ts", "other", 1800, map_policy=ORDERED)])
    _, _, bins = c.get(K)
    assert bins == {"features": {"fv": {"a": 1, "b": 2.5, "s": "x"}}, "event_ts": {"fv": 1700, "other": 1800},
                    "created": 5}
    _, _, bins = c.operate(K, [map_ops.map_get_by_key("event_ts", "other", aerospike.MAP_RETURN_VALUE)])
    assert bins == {"event_ts": 1800}
    _, _, bins = c.operate(K, [map_ops.map_get_by_key("features", "fv", aerospike.MAP_RETURN_VALUE)])
    assert bins == {"features": {"a": 1, "b": 2.5, "s": "x"}}
    _, _, bins = c.operate(K, [map_ops.map_get_by_key_list("features", ["s", "a", "zz"], aerospike.MAP_RETURN_KEY_VALUE,
                                                           ctx=[cdt_ctx.cdt_ctx_map_key("fv")])])
    assert bins["features"] == ["a", 1, "s", "x"]  # a flat list, in key order, of the keys that exist
    for rtype, want in ((aerospike.MAP_RETURN_VALUE, [1, "x"]), (aerospike.MAP_RETURN_KEY, ["a", "s"]),
                        (aerospike.MAP_RETURN_COUNT, 2)):
        _, _, bins = c.operate(K, [map_ops.map_get_by_key_list("features", ["s", "a"], rtype,
                                                               ctx=[cdt_ctx.cdt_ctx_map_key("fv")])])
        assert bins["features"] == want, rtype
    # a key the map lacks reads as nothing; so does a bin the record lacks
    _, _, bins = c.operate(K, [map_ops.map_get_by_key("event_ts", "nope", aerospike.MAP_RETURN_VALUE),
                               map_ops.map_get_by_key("absent_bin", "fv", aerospike.MAP_RETURN_VALUE)])
    assert bins.get("event_ts") is None and bins.get("absent_bin") is None
    # put replaces a value
    c.operate(K, [map_ops.map_put("event_ts", "fv", 1900, map_policy=ORDERED)])
    assert c.operate(K, [map_ops.map_get_by_key("event_ts", "fv", aerospike.MAP_RETURN_VALUE)])[2] == {"event_ts": 1900}


def test_batch_write_and_operate_as_feast_uses_them(server, make_client):
    c = make_client(server)
    batch = BatchRecords()
    for i in range(3):
        batch.batch_records.append(Write(("test", "cdt", f"e{i}".encode()), [
            map_ops.map_put_items("features", {"fv": {"x": i}}, map_policy=ORDERED),
            map_ops.map_put("event_ts", "fv", 100 + i, map_policy=ORDERED)]))
    res = c.batch_write(batch)
    assert [r.result for r in res.batch_records] == [0, 0, 0]
    keys = [("test", "cdt", f"e{i}".encode()) for i in (0, 1, 2, 9)]
    read_ops = [map_ops.map_get_by_key_list("features", ["x"], aerospike.MAP_RETURN_KEY_VALUE,
                                            ctx=[cdt_ctx.cdt_ctx_map_key("fv")]),
                map_ops.map_get_by_key("event_ts", "fv", aerospike.MAP_RETURN_VALUE)]
    recs = c.batch_operate(keys, read_ops).batch_records
    assert [r.result for r in recs] == [0, 0, 0, 2]
    assert [(r.record[2]["features"], r.record[2]["event_ts"]) for r in recs[:3]] == \
        [(["x", 0], 100), (["x", 1], 101), (["x", 2], 102)]
    # a record without the view's slot: the context key is missing -> OP_NOT_APPLICABLE (26)
    c.operate(("test", "cdt", b"only-other"), [map_ops.map_put_items("features", {"other": {"x": 1}})])
    (r,) = c.batch_operate([("test", "cdt", b"only-other")], read_ops[:1]).batch_records
    assert r.result == 26


def test_wrong_bin_type_and_unsupported_ops_are_refused(server, make_client):
    c = make_client(server)
    key = ("test", "cdt", b"plain")
    c.put(key, {"n": 1})
    with pytest.raises(ex.AerospikeError) as e:
        c.operate(key, [map_ops.map_put("n", "k", 1)])
    assert e.value.code == 12  # INCOMPATIBLE_TYPE: the bin is not a map
    c.operate(key, [map_ops.map_put("m", "k", 1)])
    for op in (map_ops.map_remove_by_key("m", "k", aerospike.MAP_RETURN_NONE),
               map_ops.map_get_by_rank("m", 0, aerospike.MAP_RETURN_VALUE),
               map_ops.map_get_by_key_list("m", ["k"], aerospike.MAP_RETURN_VALUE, inverted=True)):
        with pytest.raises(ex.AerospikeError) as e:
            c.operate(key, [op])
        assert e.value.code == 16, op  # UNSUPPORTED_FEATURE: not in the subset
    assert c.get(key)[2] == {"n": 1, "m": {"k": 1}}  # a refused op changes nothing
