"""What each process of a running stack uses, read from /proc: resident memory and CPU time.

Processes are found by the process group of each service the Stack started
(tritonserver and its python-backend stubs; the gunicorn master and workers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stack.launch import Stack

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    rss: int  # bytes
    cpu: float  # user + system seconds since the process started


def group_usage(pgid: int) -> dict[str, Usage]:
    """{"<pid> <role>": Usage} for every live process in a process group."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after the parenthesised name
            if int(fields[2]) != pgid:
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            rss = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError, IndexError):  # the process ended while we looked
            continue
        out[_label(pid, cmd)] = Usage(rss, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def _label(pid: str, cmd: str) -> str:
    """'<pid> tritonserver', '<pid> stub resnet50', '<pid> gunicorn'."""
    argv = cmd.split()
    if "model_repository/" in cmd:  # a python-backend stub: name it by its model
        return f"{pid} stub {cmd.split('model_repository/', 1)[1].split('/', 1)[0]}"
    if "gunicorn" in cmd:
        return f"{pid} gunicorn"
    return f"{pid} {Path(argv[0]).name if argv else '?'}"


def stack_usage(stack: Stack) -> dict[str, Usage]:
    """Every process of every service, labelled "<service>: <pid> <role>"."""
    usage = {}
    for svc in stack.started:
        usage.update({f"{svc.name}: {k}": v for k, v in group_usage(svc.proc.pid).items()})
    return usage
