"""Hash partitions of compact key/timestamp rows, spilled to temporary Arrow IPC files.

`scan_latest` uses them to pick the latest row per entity in bounded memory: rows are split by
`hash_keys(keys) % n_parts`, so all rows of one entity land in one partition, sorted on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fsplug.offline.arrow import comparable

__all__ = ["Spill", "hash_keys"]


class Spill:
    """Hash partitions of compact rows, appended to one Arrow IPC stream file per partition."""

    _FLUSH_ROWS = 65536

    def __init__(self, root: Path, n_parts: int):
        self.root = root
        self.n_parts = n_parts
        self.pending: list[list[pa.RecordBatch]] = [[] for _ in range(n_parts)]
        self.pending_rows = [0] * n_parts
        self.writers: list[Any] = [None] * n_parts
        self.bytes = 0

    def add(self, batch: pa.RecordBatch, part: np.ndarray) -> None:
        order = np.argsort(part, kind="stable")
        counts = np.bincount(part.astype(np.int64), minlength=self.n_parts)
        sorted_batch = batch.take(pa.array(order))
        offset = 0
        for p in np.flatnonzero(counts):
            c = int(counts[p])
            self.pending[p].append(sorted_batch.slice(offset, c))
            offset += c
            self.pending_rows[p] += c
            if self.pending_rows[p] >= self._FLUSH_ROWS:
                self._flush(int(p))

    def _flush(self, p: int) -> None:
        if not self.pending[p]:
            return
        table = pa.Table.from_batches(self.pending[p]).combine_chunks()
        self.pending[p] = []
        self.pending_rows[p] = 0
        if self.writers[p] is None:
            sink = pa.OSFile(str(self.root / f"part-{p:05d}.arrows"), "wb")
            self.writers[p] = (sink, pa.ipc.new_stream(sink, table.schema))
        self.writers[p][1].write_table(table)
        self.bytes += table.nbytes

    def read_back(self) -> Iterator[pa.Table]:
        for p in range(self.n_parts):
            self._flush(p)
            if self.writers[p] is not None:
                sink, writer = self.writers[p]
                writer.close()
                sink.close()
                path = self.root / f"part-{p:05d}.arrows"
                with pa.OSFile(str(path)) as f:
                    table = pa.ipc.open_stream(f).read_all()
                path.unlink()
                yield table


_MULTS = np.random.default_rng(0x5EED).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


def hash_keys(keys: Sequence[pa.Array]) -> np.ndarray:
    """A 64-bit hash per row of the (non-null) key columns; only used to split rows into partitions."""
    h = np.zeros(len(keys[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in keys:
            arr = comparable(key)
            if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
                hk = _hash_bytes(arr)
            else:
                hk = arr.cast(pa.int64()).fill_null(0).to_numpy().view(np.uint64)
            h = (h * np.uint64(0x100000001B3)) ^ hk
        # finalizer (splitmix64) so that sequential ids spread over all partitions
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def _hash_bytes(arr: pa.Array) -> np.ndarray:
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    start, stop = int(offsets[0]), int(offsets[-1])
    data = (
        np.frombuffer(bufs[2], dtype=np.uint8)[start:stop] if bufs[2] is not None else np.zeros(0, np.uint8)
    )
    lengths = np.diff(offsets)
    pos = np.arange(stop - start, dtype=np.int64) - np.repeat(offsets[:-1] - start, lengths)
    with np.errstate(over="ignore"):
        contrib = (data.astype(np.uint64) + np.uint64(1)) * _MULTS[pos % 64] + pos.astype(np.uint64)
        cs = np.concatenate([np.zeros(1, np.uint64), np.cumsum(contrib, dtype=np.uint64)])
        return cs[offsets[1:] - start] - cs[offsets[:-1] - start] + lengths.astype(np.uint64)
