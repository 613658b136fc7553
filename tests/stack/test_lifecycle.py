"""`make up` stopped the ways people stop it, under a pseudo-terminal: nothing may be left running,
and the next `make up` comes up at once on the same ports (with keep-alive connections still open)."""
from __future__ import annotations

import os
import pty
import select
import signal
import time
from pathlib import Path

import pytest
import requests

from stack.launch import Ports, free_ports
from tests.conftest import ROOT

UP_TIMEOUT_S = 180
GONE_TIMEOUT_S = 40


def descendants(root: int) -> set[int]:
    """Every process whose parent chain leads to `root` (services run in their own sessions, but are its children)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


class Up:
    """`make -s up` on a pseudo-terminal, as a person runs it: the pty is its controlling terminal
    (or, with a wrapper such as `setsid -w` or `script`, the terminal its output goes to)."""

    def __init__(self, ports: Ports, wrapper: tuple[str, ...] = ()):
        env = {**os.environ, "GATEWAY_PORT": str(ports.gateway), "TRITON_HTTP_PORT": str(ports.triton_http),
               "TRITON_GRPC_PORT": str(ports.triton_grpc), "TRITON_METRICS_PORT": str(ports.triton_metrics),
               "PROMETHEUS_PORT": str(ports.prometheus), "PYTHONUNBUFFERED": "1"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a new session whose controlling terminal is the pty
            os.chdir(ROOT)
            argv = [*wrapper, "make", "-s", "up"] if wrapper[:1] != ("script",) else [*wrapper, "make -s up", "/dev/null"]
            os.execvpe(argv[0], argv, env)
        os.set_inheritable(self.fd, False)  # a later case's `make up` must not hold this terminal open
        self.output = b""
        self.url = f"http://127.0.0.1:{ports.gateway}"

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.fd, 65536)
            except OSError:  # the other side is gone
                time.sleep(timeout)

    def wait_up(self) -> set[int]:
        deadline = time.time() + UP_TIMEOUT_S
        while b"fakelens is up" not in self.output:
            assert time.time() < deadline, self.output.decode(errors="replace")[-3000:]
            self.read(1)
        return descendants(self.pid)

    def reap(self, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.2)
        try:
            os.close(self.fd)
        except OSError:
            pass


def stop(up: Up, how: str) -> None:
    launcher = next(p for p in descendants(up.pid) if b"stack.launch" in Path(f"/proc/{p}/cmdline").read_bytes())
    if how == "ctrl-c":
        os.write(up.fd, b"\x03")
    elif how == "ctrl-c twice":
        os.write(up.fd, b"\x03")
        time.sleep(1)
        os.write(up.fd, b"\x03")
    elif how == "ctrl-d":  # end of input
        os.write(up.fd, b"\x04")
    elif how == "sigterm to the group":  # systemd, `kill -- -PGID`; make forwards it again
        os.killpg(up.pid, signal.SIGTERM)
    elif how == "sigterm repeated":
        for _ in range(3):
            os.killpg(up.pid, signal.SIGTERM)
            time.sleep(0.5)
    elif how in ("terminal closed", "terminal closed under setsid", "terminal closed under script"):
        # The terminal's shell gets SIGHUP and, as bash does, resends it to its jobs: every process of the
        # foreground group (make and the launcher) gets one. Then the terminal itself is gone.
        os.killpg(up.pid, signal.SIGHUP)
        os.close(up.fd)
    elif how == "launcher killed":
        os.kill(launcher, signal.SIGKILL)
    else:
        raise ValueError(how)


STOPS = ["ctrl-c", "ctrl-c twice", "ctrl-d", "sigterm to the group", "sigterm repeated", "terminal closed", "launcher killed",
         "terminal closed under setsid", "terminal closed under script"]
# `setsid -w make up`: make runs in a session of its own, which the terminal's hangup never signals.
# `script -c "make up"`: make runs on script's own pseudo-terminal, behind the one that closes.
WRAPPERS = {"terminal closed under setsid": ("setsid", "-w"), "terminal closed under script": ("script", "-qfec")}


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports(*free_ports(5))


@pytest.fixture(scope="module")
def clients():
    """Keep-alive sessions opened before each stop and left open across the next start."""
    sessions: list[requests.Session] = []
    yield sessions
    for s in sessions:
        s.close()


@pytest.mark.parametrize("how", STOPS)
def test_stop_leaves_nothing_and_restarts_on_the_same_ports(ports, clients, how):
    up = Up(ports, WRAPPERS.get(how, ()))
    started = up.wait_up()
    assert len(started) >= 8, started  # make, launcher, tritonserver + 3 stubs, gunicorn + workers, nginx, prometheus
    clients.append(requests.Session())  # a client with an open connection while the stack stops and restarts
    assert clients[-1].get(up.url + "/healthz", timeout=10).status_code == 200

    stop(up, how)
    deadline = time.time() + GONE_TIMEOUT_S
    while (left := alive(started)) and time.time() < deadline:
        if not how.startswith("terminal closed"):
            up.read(0.5)
        else:
            time.sleep(0.5)
    up.reap()
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80] for pid in alive(started)}
    assert not left, f"{how}: still running: {left}"
    # The next case starts `make up` again at once on the same ports.


def test_up_again_after_the_last_stop(ports, clients):
    up = Up(ports)
    up.wait_up()
    assert requests.get(up.url + "/readyz", timeout=10).status_code == 200
    stop(up, "ctrl-c")
    up.reap()
