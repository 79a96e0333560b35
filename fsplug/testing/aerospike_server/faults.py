"""Fault injection for one test server: latency, pause, refused and dropped connections, failures.

:class:`Faults` holds the state; :class:`~fsplug.testing.aerospike_server.server.AerospikeTestServer`
delegates its public fault-injection methods here and asks, for every command it reads, whether to
wait (``wait_resumed``, ``delay``) and how to fail it (``take``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsplug.testing.aerospike_server.server import AerospikeTestServer

__all__ = ["Drop", "Faults"]


class Drop(Exception):
    """Close the connection without answering (a fault, or a stop during a delay)."""


class _Rule:
    """``fail_next``: let ``skip`` commands of ``commands`` kinds pass, then fail the next ``remaining``
    of them with ``action``."""

    __slots__ = ("remaining", "commands", "action", "skip")

    def __init__(self, remaining: int, commands: frozenset | None, action, skip: int = 0):
        self.remaining = remaining
        self.commands = commands
        self.action = action
        self.skip = skip


def _kinds(commands) -> frozenset | None:
    if commands is None:
        return None
    if isinstance(commands, str):
        commands = [commands]
    return frozenset(commands)


def _matches(kind: str, commands: frozenset) -> bool:
    return kind in commands or (kind.startswith("batch") and "batch" in commands)


class Faults:
    """Fault-injection state of one server; see the package docstring for the behaviours."""

    def __init__(self, server: AerospikeTestServer):
        self._server = server
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._latency: tuple[float, frozenset | None] = (0.0, None)
        self.paused = False
        self.refusing = False
        self._pause_cond = threading.Condition()

    # -- the public API (AerospikeTestServer delegates here) -----------------------------------

    def set_latency(self, seconds: float, commands=None) -> None:
        """Delay the answer to each command by ``seconds`` (0 turns it off).

        ``commands``: None = every data command (not info), or a set of kinds (see ``stats``),
        which may include ``"info"``; ``"all"`` covers data and info commands.
        """
        self._latency = (float(seconds), _kinds(commands))

    def refuse_connections(self, refuse: bool = True) -> None:
        """Stop listening (new connections get ECONNREFUSED) or listen again on the same port."""
        if refuse == self.refusing:
            return
        srv = self._server
        # The accept loop ends when it finds no listener and no refusal: so set the flag before
        # closing, and clear it only after the new listener is in place.
        if refuse:
            self.refusing = True
            if srv.running:
                srv._close_listener()
        else:
            if srv.running:
                srv._open_listener()
            self.refusing = False

    def drop_connections(self) -> int:
        """Close every open client connection now; returns how many were closed."""
        n = self._server._close_connections()
        self.wake()
        return n

    def pause(self) -> None:
        """Keep accepting connections and reading requests, but answer nothing until resume()."""
        self.paused = True

    def resume(self) -> None:
        """Answer again, starting with the requests read while paused."""
        with self._pause_cond:
            self.paused = False
            self._pause_cond.notify_all()

    def fail_next(self, n: int = 1, commands=None, action="drop", after: int = 0) -> None:
        """Fail the next ``n`` data commands of the given kinds (None = any data command), once
        ``after`` of them have passed.

        ``action``: ``"drop"`` closes the connection without executing or answering;
        ``"drop_after"`` executes the command then closes the connection without answering;
        an int answers that result code without executing (batches get one error message
        flagged LAST, as a server-level batch failure).
        """
        if not (action in ("drop", "drop_after") or (isinstance(action, int)
                                                      and not isinstance(action, bool))):
            raise ValueError("action must be 'drop', 'drop_after' or an int result code")
        with self._lock:
            self._rules.append(_Rule(int(n), _kinds(commands), action, int(after)))

    def clear_faults(self) -> None:
        """Undo every fault injection (latency, pause, refusal, pending failures)."""
        with self._lock:
            self._rules.clear()
        self._latency = (0.0, None)
        self.resume()
        self.refuse_connections(False)

    # -- used by the server --------------------------------------------------------------------

    def reset(self) -> None:
        """At (re)start: not paused, not refusing (rules and latency stay)."""
        self.paused = False
        self.refusing = False

    def wake(self) -> None:
        """Let connections waiting in ``wait_resumed`` re-check (stop, dropped connections)."""
        with self._pause_cond:
            self._pause_cond.notify_all()

    def wait_resumed(self, is_open) -> bool:
        """Block while paused; False when the connection or the server closed meanwhile."""
        with self._pause_cond:
            while self.paused and is_open():
                self._pause_cond.wait(0.1)
        return is_open()

    def delay(self, kind: str, is_open, stopping: threading.Event) -> None:
        """Sleep the configured latency for a command of ``kind``; Drop if closed meanwhile."""
        seconds, commands = self._latency
        if seconds <= 0:
            return
        if commands is None:
            if kind == "info":
                return
        elif not (_matches(kind, commands) or "all" in commands):
            return
        # Sleep, but wake up for stop() and drop_connections().
        deadline = time.monotonic() + seconds
        while is_open():
            left = deadline - time.monotonic()
            if left <= 0 or stopping.wait(min(left, 0.05)):
                break
        if not is_open() or stopping.is_set():
            raise Drop

    def take(self, kind: str):
        """The action of the first pending ``fail_next`` rule matching ``kind`` (used up), or None."""
        if not self._rules:
            return None
        with self._lock:
            for rule in self._rules:
                if rule.remaining <= 0:
                    continue
                if rule.commands is None or _matches(kind, rule.commands):
                    if rule.skip > 0:  # this one passes (and is not offered to later rules)
                        rule.skip -= 1
                        return None
                    rule.remaining -= 1
                    self._server.count("faults_injected")
                    self._rules = [r for r in self._rules if r.remaining > 0]
                    return rule.action
        return None
