"""In-memory record storage: namespaces of records keyed by digest, with TTL and truncation."""

from __future__ import annotations

import threading
import time

from fsplug.testing.aerospike_server.protocol import CITRUSLEAF_EPOCH

TTL_NAMESPACE_DEFAULT = 0
TTL_NEVER_EXPIRE = 0xFFFFFFFF
TTL_DONT_UPDATE = 0xFFFFFFFE
MAX_ALLOWED_TTL = 10 * 365 * 24 * 3600  # the server's max-ttl ceiling: 10 years

DEFAULT_MAX_RECORD_SIZE = 1024 * 1024

# Record size as this server estimates it, after the real server's flat storage format: a
# 36-byte header, the void time (4 bytes, when the record expires), the set name and the stored
# key (each with a length byte), a bin count, and per bin its name (with a length byte), a
# particle type byte and the value (integers and doubles 8 bytes, bools 1, strings, blobs,
# lists and maps their length plus a length byte).  Storage is counted in 16-byte blocks.
RECORD_HEADER = 36
RBLOCK = 16
_FIXED_SIZE = {1: 8, 2: 8, 17: 1}


class Clock:
    """Wall clock plus an adjustable offset (``advance``) shared by everything that expires."""

    def __init__(self):
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def now_cl(self) -> int:
        """Seconds since 2010-01-01 (Aerospike's 'citrusleaf epoch')."""
        return int(time.time() + self.offset) - CITRUSLEAF_EPOCH

    def now_ns(self) -> int:
        return time.time_ns() + int(self.offset * 1e9)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Record:
    __slots__ = ("set_name", "key", "bins", "generation", "void_time", "lut")

    def __init__(self, set_name: str, key, bins: dict, generation: int, void_time: int, lut: int):
        self.set_name = set_name  # '' when no set
        self.key = key  # raw KEY field bytes (particle type byte + value) or None
        self.bins = bins  # {name: (particle type, raw bytes)} in write order
        self.generation = generation
        self.void_time = void_time  # citrusleaf-epoch seconds on the server clock, 0 = never
        self.lut = lut  # last update, ns since Unix epoch (server clock)

    def size(self) -> int:
        """Estimated flat (storage) size in bytes; see RECORD_HEADER."""
        n = RECORD_HEADER + 1
        if self.void_time:
            n += 4
        if self.set_name:
            n += 1 + len(self.set_name)
        if self.key is not None:
            n += 1 + len(self.key)
        for name, (pt, raw) in self.bins.items():
            n += 2 + len(name)
            fixed = _FIXED_SIZE.get(pt)
            n += fixed if fixed is not None else _varint_len(len(raw)) + len(raw)
        return n

    def stored_size(self) -> int:
        """``size()`` rounded up to whole 16-byte storage blocks (``data_used_bytes``)."""
        return -(-self.size() // RBLOCK) * RBLOCK


def _varint_len(n: int) -> int:
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


class SetInfo:
    __slots__ = ("name", "truncate_lut_ns")

    def __init__(self, name: str):
        self.name = name
        self.truncate_lut_ns = 0  # ns since Unix epoch (server clock); 0 = never truncated

    @property
    def truncate_lut_ms(self) -> int:
        """As the server reports it: ms since the citrusleaf epoch."""
        return lut_ns_to_cl_ms(self.truncate_lut_ns)


def lut_ns_to_cl_ms(ns: int) -> int:
    return ns // 1_000_000 - CITRUSLEAF_EPOCH * 1000 if ns else 0


class Namespace:
    """One namespace: records keyed by digest; settings as the server's namespace config."""

    def __init__(self, name: str, clock: Clock, *, nsup_period: int = 0, default_ttl: int = 0,
                 max_record_size: int = DEFAULT_MAX_RECORD_SIZE, allow_ttl_without_nsup=False):
        self.name = name
        self.clock = clock
        self.nsup_period = int(nsup_period)
        self.default_ttl = int(default_ttl)
        self.max_record_size = int(max_record_size)
        self.allow_ttl_without_nsup = bool(allow_ttl_without_nsup)
        self.records: dict[bytes, Record] = {}
        self.sets: dict[str, SetInfo] = {}
        self.truncate_lut_ns = 0
        self.lock = threading.RLock()

    # -- settings ------------------------------------------------------------------------------

    def settings(self) -> dict:
        return {"nsup_period": self.nsup_period, "default_ttl": self.default_ttl,
                "max_record_size": self.max_record_size,
                "allow_ttl_without_nsup": self.allow_ttl_without_nsup}

    def ttl_is_valid(self, ttl: int) -> bool:
        return ttl <= MAX_ALLOWED_TTL or ttl in (TTL_NEVER_EXPIRE, TTL_DONT_UPDATE)

    def ttl_is_disallowed(self, ttl: int) -> bool:
        """The server refuses (code 22) a write carrying a TTL while nsup-period is 0."""
        if self.nsup_period != 0 or self.allow_ttl_without_nsup:
            return False
        if ttl == TTL_NAMESPACE_DEFAULT:
            return self.default_ttl != 0
        return 0 < ttl < 0x80000000  # excludes never-expire (-1) and don't-update (-2)

    def void_time_for(self, ttl: int, old: Record | None) -> int:
        """Expiry (citrusleaf seconds, 0 = never) for a write with message ``ttl``."""
        if ttl == TTL_DONT_UPDATE:
            return old.void_time if old is not None else self._default_void_time()
        if ttl == TTL_NEVER_EXPIRE:
            return 0
        if ttl == TTL_NAMESPACE_DEFAULT:
            return self._default_void_time()
        return self.clock.now_cl() + ttl

    def _default_void_time(self) -> int:
        return self.clock.now_cl() + self.default_ttl if self.default_ttl else 0

    # -- records -------------------------------------------------------------------------------

    def is_live(self, rec: Record) -> bool:
        if rec.void_time and rec.void_time <= self.clock.now_cl():
            return False
        if rec.lut <= self.truncate_lut_ns:
            return False
        if rec.set_name:
            s = self.sets.get(rec.set_name)
            if s is not None and rec.lut <= s.truncate_lut_ns:
                return False
        return True

    def get(self, digest: bytes) -> Record | None:
        """The live record for ``digest`` (expired/truncated ones are removed on the way)."""
        rec = self.records.get(digest)
        if rec is None:
            return None
        if not self.is_live(rec):
            del self.records[digest]
            return None
        return rec

    def put(self, digest: bytes, rec: Record) -> None:
        if rec.set_name and rec.set_name not in self.sets:
            self.sets[rec.set_name] = SetInfo(rec.set_name)
        self.records[digest] = rec

    def delete(self, digest: bytes) -> None:
        self.records.pop(digest, None)

    def purge_expired(self) -> int:
        with self.lock:
            dead = [d for d, r in self.records.items() if not self.is_live(r)]
            for d in dead:
                del self.records[d]
            return len(dead)

    def count(self, set_name: str | None = None) -> int:
        with self.lock:
            self.purge_expired()
            if set_name is None:
                return len(self.records)
            return sum(1 for r in self.records.values() if r.set_name == set_name)

    def set_stats(self) -> list[tuple[str, int, int, int]]:
        """[(set name, objects, data bytes, truncate lut ms)] for every set ever written."""
        with self.lock:
            self.purge_expired()
            counts: dict[str, list[int]] = {name: [0, 0] for name in self.sets}
            for r in self.records.values():
                if r.set_name:
                    c = counts.setdefault(r.set_name, [0, 0])
                    c[0] += 1
                    c[1] += r.stored_size()
            return [(name, c[0], c[1], self.sets[name].truncate_lut_ms if name in self.sets else 0)
                    for name, c in counts.items()]

    def truncate(self, set_name: str | None, lut_ns: int | None = None) -> None:
        """Drop records last updated at or before ``lut_ns`` (ns since Unix epoch; default now)."""
        with self.lock:
            lut = self.clock.now_ns() if lut_ns is None else lut_ns
            if set_name:
                s = self.sets.setdefault(set_name, SetInfo(set_name))
                s.truncate_lut_ns = max(s.truncate_lut_ns, lut)
            else:
                self.truncate_lut_ns = max(self.truncate_lut_ns, lut)
            self.purge_expired()

    def clear(self) -> None:
        with self.lock:
            self.records.clear()
            self.sets.clear()
            self.truncate_lut_ns = 0
