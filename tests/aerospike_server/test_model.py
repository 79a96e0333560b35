"""Random command sequences through the real client agree with a plain-dict model."""

from __future__ import annotations

import itertools

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers.batch.records import BatchRecords, Remove, Write
from aerospike_helpers.operations import operations as op
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsplug.testing.aerospike_server import AerospikeTestServer

from .conftest import client_config

KEYS = st.integers(0, 7)
BIN_NAMES = st.sampled_from(["a", "b", "c"])
# The official client sends Python strings as C strings: it cuts them at the first NUL (seen on the
# wire: 'x\x00y' arrives as 'x'), whatever the server. So the model's strings have no NUL.
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=8)
VALUES = (st.integers(-(1 << 63), (1 << 63) - 1) | st.floats(allow_nan=False) | TEXT
          | st.binary(max_size=8) | st.lists(st.integers(-5, 5), max_size=3)
          | st.dictionaries(TEXT, st.integers(-5, 5), max_size=3))
BINS = st.dictionaries(BIN_NAMES, VALUES | st.none(), min_size=1, max_size=3)
COMMANDS = st.lists(st.one_of(
    st.tuples(st.just("put"), KEYS, BINS),
    st.tuples(st.just("remove"), KEYS),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("incr"), KEYS, BIN_NAMES, st.integers(-100, 100)),
    st.tuples(st.just("batch_read"), st.lists(KEYS, min_size=1, max_size=6)),
    st.tuples(st.just("batch_write"), st.lists(st.tuples(KEYS, BINS | st.none()), min_size=2,
                                               max_size=5)),
), max_size=25)

_sets = itertools.count()


@pytest.fixture(scope="module")
def model_client():
    with AerospikeTestServer(["test"]) as srv:
        c = aerospike.client(client_config([(srv.host, srv.port)])).connect()
        yield c
        c.close()


def _put(model, key, bins):
    rec = dict(model.get(key, {}))
    for name, value in bins.items():
        if value is None:
            rec.pop(name, None)
        else:
            rec[name] = value
    if rec:
        model[key] = rec
    else:
        model.pop(key, None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(COMMANDS)
def test_client_sequences_match_a_dict_model(model_client, commands):
    c = model_client
    set_name = f"m{next(_sets)}"
    model: dict[int, dict] = {}

    def key(i):
        return ("test", set_name, i)

    for cmd in commands:
        kind = cmd[0]
        if kind == "put":
            _, i, bins = cmd
            if i not in model and all(v is None for v in bins.values()):
                with pytest.raises(ex.RecordNotFound):
                    c.put(key(i), bins)
                continue
            c.put(key(i), bins)
            _put(model, i, bins)
        elif kind == "remove":
            _, i = cmd
            if i in model:
                c.remove(key(i))
                del model[i]
            else:
                with pytest.raises(ex.RecordNotFound):
                    c.remove(key(i))
        elif kind == "get":
            _, i = cmd
            if i in model:
                assert c.get(key(i))[2] == model[i]
            else:
                with pytest.raises(ex.RecordNotFound):
                    c.get(key(i))
        elif kind == "incr":
            _, i, name, delta = cmd
            cur = model.get(i, {}).get(name)
            if cur is not None and (not isinstance(cur, int) or isinstance(cur, bool)):
                with pytest.raises(ex.AerospikeError) as e:
                    c.increment(key(i), name, delta)
                assert e.value.code == 12
                continue
            c.increment(key(i), name, delta)
            v = (cur or 0) + delta
            v = ((v + (1 << 63)) % (1 << 64)) - (1 << 63)
            _put(model, i, {name: v})
        elif kind == "batch_read":
            _, ids = cmd
            recs = c.batch_read([key(i) for i in ids]).batch_records
            assert [r.result for r in recs] == [0 if i in model else 2 for i in ids]
            assert [r.record[2] if r.result == 0 else None for r in recs] == [
                model.get(i) for i in ids]
        elif kind == "batch_write":
            _, rows = cmd
            ops = []
            expected = []
            for i, bins in rows:
                if bins is None:
                    ops.append(Remove(key(i)))
                    expected.append(0 if i in model else 2)
                    model.pop(i, None)
                else:
                    ops.append(Write(key(i), [op.write(n, v) for n, v in bins.items()]))
                    if i not in model and all(v is None for v in bins.values()):
                        expected.append(2)
                    else:
                        expected.append(0)
                        _put(model, i, bins)
            res = c.batch_write(BatchRecords(ops))
            assert [r.result for r in res.batch_records] == expected
    for i in range(8):
        assert c.exists(key(i))[1] is not None if i in model else c.exists(key(i))[1] is None
