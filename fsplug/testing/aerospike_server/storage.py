"""In-memory record storage: namespaces of records keyed by digest, with TTL and truncation."""

from __future__ import annotations

import threading
import time

from fsplug.testing.aerospike_server.protocol import (
    CITRUSLEAF_EPOCH, PT_BOOL, PT_FLOAT, PT_INTEGER,
)

TTL_NAMESPACE_DEFAULT = 0
TTL_NEVER_EXPIRE = 0xFFFFFFFF
TTL_DONT_UPDATE = 0xFFFFFFFE
MAX_ALLOWED_TTL = 10 * 365 * 24 * 3600  # the server's max-ttl ceiling: 10 years

DEFAULT_MAX_RECORD_SIZE = 1024 * 1024
# How long a truncate keeps its records counted (``truncating=true``) after answering "ok".
DEFAULT_TRUNCATE_SECONDS = 0.05

CITRUSLEAF_EPOCH_MS = CITRUSLEAF_EPOCH * 1000

# Stored record size, after the real server's flat storage format (measured on CE 8.1, see
# real-server-facts.md section 6): a 35-byte header, the set name and the stored key (each with
# a length), the void time (4 bytes, when the record expires), a bin count, and per bin its
# name (with a length byte) and its particle. The storage engine appends a 4-byte end mark and
# allocates in 16-byte blocks.
FLAT_HEADER = 35
END_MARK = 4
RBLOCK = 16


class Clock:
    """Wall clock plus an adjustable offset (``advance``) shared by everything that expires.

    ``freeze()`` stops it (every reading gives the same instant, so a write and a truncate can
    land in the same millisecond); ``unfreeze()`` lets it run again. ``advance`` works in both
    states.
    """

    def __init__(self):
        self.offset = 0.0
        self._frozen_ns: int | None = None

    def now_ns(self) -> int:
        """ns since the Unix epoch on the server clock."""
        frozen = self._frozen_ns
        if frozen is not None:
            return frozen
        return time.time_ns() + int(self.offset * 1e9)

    def now(self) -> float:
        return self.now_ns() / 1e9

    def now_ms(self) -> int:
        """ms since the Unix epoch (the resolution of a record's last-update time)."""
        return self.now_ns() // 1_000_000

    def now_cl(self) -> int:
        """Seconds since 2010-01-01 (Aerospike's 'citrusleaf epoch')."""
        return self.now_ns() // 1_000_000_000 - CITRUSLEAF_EPOCH

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        if self._frozen_ns is not None:
            self._frozen_ns += int(seconds * 1e9)

    def freeze(self) -> None:
        if self._frozen_ns is None:
            self._frozen_ns = self.now_ns()

    def unfreeze(self) -> None:
        # Wall clock + offset is never behind the frozen instant (advance moved both), so the
        # clock does not run backwards.
        self._frozen_ns = None

    @property
    def frozen(self) -> bool:
        return self._frozen_ns is not None


class Record:
    """One stored record: bins as raw particles, plus the metadata the server keeps."""

    __slots__ = ("set_name", "key", "bins", "generation", "void_time", "lut_ms")

    def __init__(self, set_name: str, key, bins: dict, generation: int, void_time: int,
                 lut_ms: int):
        self.set_name = set_name  # '' when no set
        self.key = key  # raw KEY field bytes (particle type byte + value) or None
        self.bins = bins  # {name: (particle type, raw bytes)} in write order
        self.generation = generation
        self.void_time = void_time  # citrusleaf-epoch seconds on the server clock, 0 = never
        self.lut_ms = lut_ms  # last update, ms since the Unix epoch (server clock)

    def flat_size(self) -> int:
        """The real server's flat size (``flat`` in facts section 6), without the end mark."""
        n = FLAT_HEADER
        if self.set_name:
            n += 1 + len(self.set_name.encode("utf-8"))
        if self.key is not None:
            n += uintvar_len(len(self.key)) + len(self.key)
        if self.void_time:
            n += 4
        n += uintvar_len(len(self.bins))
        for name, (pt, raw) in self.bins.items():
            n += 1 + len(name.encode("utf-8")) + particle_size(pt, raw)
        return n

    def stored_size(self) -> int:
        """Bytes in storage: flat size plus the end mark in 16-byte blocks (RecordSize,
        ``data_used_bytes``)."""
        return -(-(self.flat_size() + END_MARK) // RBLOCK) * RBLOCK


def particle_size(ptype: int, raw: bytes) -> int:
    """Bytes a bin value takes in the flat format: type byte plus value."""
    if ptype == PT_INTEGER:
        v = int.from_bytes(raw, "big", signed=True)
        if 0 <= v < 1 << 8:
            return 2 + 1
        if 0 <= v < 1 << 16:
            return 2 + 2
        if 0 <= v < 1 << 32:
            return 2 + 4
        return 2 + 8
    if ptype == PT_FLOAT:
        return 9
    if ptype == PT_BOOL:
        return 2
    return 5 + len(raw)


def uintvar_len(n: int) -> int:
    """Length of ``n`` as a 7-bits-per-byte variable-length unsigned integer."""
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


class _Truncation:
    """A set's (or a namespace's) truncate state: the lut and the end of its 'truncating' phase."""

    __slots__ = ("lut_ms", "busy_until")

    def __init__(self):
        self.lut_ms = 0  # ms since the Unix epoch (server clock); 0 = never truncated
        self.busy_until = 0.0  # time.monotonic() at which the truncate has removed its records

    @property
    def truncating(self) -> bool:
        return time.monotonic() < self.busy_until

    @property
    def lut_cl_ms(self) -> int:
        """As the server reports it (``truncate_lut``): ms since the citrusleaf epoch."""
        return self.lut_ms - CITRUSLEAF_EPOCH_MS if self.lut_ms else 0

    def covers(self, rec: Record) -> bool:
        """A record last updated before the lut (ms resolution) is truncated; the same ms is not."""
        return rec.lut_ms < self.lut_ms

    def start(self, lut_ms: int, seconds: float) -> None:
        self.lut_ms = max(self.lut_ms, lut_ms)
        self.busy_until = max(self.busy_until, time.monotonic() + seconds)


class Namespace:
    """One namespace: records keyed by digest; settings as the server's namespace config."""

    def __init__(self, name: str, clock: Clock, *, nsup_period: int = 0, default_ttl: int = 0,
                 max_record_size: int = DEFAULT_MAX_RECORD_SIZE, allow_ttl_without_nsup=False,
                 truncate_seconds: float = DEFAULT_TRUNCATE_SECONDS):
        self.name = name
        self.clock = clock
        self.nsup_period = int(nsup_period)
        self.default_ttl = int(default_ttl)
        self.max_record_size = int(max_record_size)
        self.allow_ttl_without_nsup = bool(allow_ttl_without_nsup)
        self.truncate_seconds = float(truncate_seconds)
        self.records: dict[bytes, Record] = {}
        self.sets: dict[str, _Truncation] = {}
        self.truncation = _Truncation()  # truncate-namespace
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

    def _expired(self, rec: Record) -> bool:
        return bool(rec.void_time) and rec.void_time <= self.clock.now_cl()

    def _truncation_of(self, rec: Record) -> _Truncation | None:
        """The truncate that removes ``rec``, or None."""
        if self.truncation.covers(rec):
            return self.truncation
        if rec.set_name:
            s = self.sets.get(rec.set_name)
            if s is not None and s.covers(rec):
                return s
        return None

    def is_live(self, rec: Record) -> bool:
        """Visible to reads and writes: not expired and not truncated."""
        return not self._expired(rec) and self._truncation_of(rec) is None

    def _is_gone(self, rec: Record) -> bool:
        """Removable from memory: expired, or truncated by a truncate that has finished.

        A record of a truncate still in its 'truncating' phase is already invisible but stays
        in ``objects``, as on a real node, where the truncate walks the index after answering.
        """
        if self._expired(rec):
            return True
        t = self._truncation_of(rec)
        return t is not None and not t.truncating

    def get(self, digest: bytes) -> Record | None:
        """The live record for ``digest`` (expired/truncated ones are removed on the way)."""
        rec = self.records.get(digest)
        if rec is None:
            return None
        if self.is_live(rec):
            return rec
        if self._is_gone(rec):
            del self.records[digest]
        return None

    def put(self, digest: bytes, rec: Record) -> None:
        if rec.set_name and rec.set_name not in self.sets:
            self.sets[rec.set_name] = _Truncation()
        self.records[digest] = rec

    def delete(self, digest: bytes) -> None:
        self.records.pop(digest, None)

    def purge_expired(self) -> int:
        """Remove expired records and those of finished truncates; returns how many."""
        with self.lock:
            dead = [d for d, r in self.records.items() if self._is_gone(r)]
            for d in dead:
                del self.records[d]
            return len(dead)

    def count(self, set_name: str | None = None) -> int:
        """Live records (what reads see) in the namespace or one set."""
        with self.lock:
            self.purge_expired()
            return sum(1 for r in self.records.values()
                       if (set_name is None or r.set_name == set_name) and self.is_live(r))

    def objects(self) -> int:
        """The namespace's ``objects`` statistic: records of truncates still running included."""
        with self.lock:
            self.purge_expired()
            return len(self.records)

    def set_stats(self) -> list[tuple[str, int, int, int, bool]]:
        """[(set name, objects, data bytes, truncate lut ms, truncating)] for every set ever
        written or truncated; objects include records of a truncate still running."""
        with self.lock:
            self.purge_expired()
            counts: dict[str, list[int]] = {name: [0, 0] for name in self.sets}
            for r in self.records.values():
                if r.set_name:
                    c = counts.setdefault(r.set_name, [0, 0])
                    c[0] += 1
                    c[1] += r.stored_size()
            out = []
            for name, c in counts.items():
                t = self.sets.get(name)
                truncating = self.truncation.truncating or (t is not None and t.truncating)
                out.append((name, c[0], c[1], t.lut_cl_ms if t is not None else 0, truncating))
            return out

    def truncate(self, set_name: str | None, lut_ms: int | None = None) -> None:
        """Truncate a set (or, with None, the namespace): records last updated before ``lut_ms``
        (ms since the Unix epoch; default now) disappear at once and leave ``objects`` after
        ``truncate_seconds``. A record written in the lut's millisecond or later stays."""
        with self.lock:
            lut = self.clock.now_ms() if lut_ms is None else lut_ms
            if set_name:
                self.sets.setdefault(set_name, _Truncation()).start(lut, self.truncate_seconds)
            else:
                self.truncation.start(lut, self.truncate_seconds)
            self.purge_expired()

    def truncating(self) -> bool:
        """Whether any truncate of this namespace (or of one of its sets) is still running."""
        with self.lock:
            return self.truncation.truncating or any(t.truncating for t in self.sets.values())

    def clear(self) -> None:
        with self.lock:
            self.records.clear()
            self.sets.clear()
            self.truncation = _Truncation()
