"""Child processes for the serving load benchmark: started in their own session, read, measured, killed.

CPU time and memory come from /proc (Linux), summed over a process and all its descendants, so a
server that forks workers is measured whole.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


class Child:
    """A process whose output (stdout and stderr together) is drained by a thread, so that a chatty
    server never blocks on a full pipe; the last lines are kept for the error message."""

    def __init__(self, name: str, command: Sequence[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: stop() ends its workers too
        )
        self.lines: deque[str] = deque(maxlen=60)
        self._new_line = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line matching `pattern`; RuntimeError if the process exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._new_line:
            while True:
                for line in list(self.lines)[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(
                        f"{self.name} printed no {pattern!r} in {timeout:.0f} s:\n{self.tail()}"
                    )
                self._new_line.wait(min(left, 0.5))

    def tail(self, count: int = 25) -> str:
        return "\n".join(list(self.lines)[-count:])

    def stop(self) -> None:
        """SIGTERM to its process group, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        # Workers that outlived their leader still carry its group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(root: int) -> float:
    """User plus system CPU seconds of the tree (with the children it has already reaped)."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the name: state is field 3, utime..cstime are fields 14..17 (man 5 proc).
        total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def rss_bytes(root: int) -> int:
    """Resident memory of the tree now (the sum of each process's VmRSS)."""
    total = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if match := re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE):
            total += int(match.group(1)) * 1024
    return total


class RssSampler:
    """Samples the tree's resident memory every `interval` seconds in a thread; `peak` is the most."""

    def __init__(self, root: int, *, interval: float = 0.05) -> None:
        self.root = root
        self.interval = interval
        self.peak = rss_bytes(root)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes(self.root))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.root))
