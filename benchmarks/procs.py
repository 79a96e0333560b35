"""Process trees under /proc: the benchmarks' child processes (Spark's JVM and workers, a server's workers)."""

from __future__ import annotations

import contextlib
import os

__all__ = ["descendants", "pin"]


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process under `root`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                out[pid] = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    return out


def pin(root: int, cpus: set[int]) -> None:
    """Run every thread of process `root` and of the processes under it on `cpus` only (Linux)."""
    for pid in [root, *descendants(root)]:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError):  # (a thread that ended meanwhile)
                os.sched_setaffinity(tid, cpus)
