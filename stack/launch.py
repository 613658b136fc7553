"""The embedded CPU stack: tritonserver (python-backend twin) -> gunicorn gateway behind nginx -> Prometheus.

    python -m stack.launch        # what `make up` runs; Ctrl-C stops everything

Environment it reads (the README's table lists them too):
    GATEWAY_PORT, TRITON_HTTP_PORT, TRITON_GRPC_PORT, TRITON_METRICS_PORT, PROMETHEUS_PORT
    GATEWAY_WORKERS, GATEWAY_THREADS        gunicorn (defaults in gateway/gunicorn_conf.py)
    FAKELENS_RATE_LIMIT, FAKELENS_RATE_BURST, FAKELENS_CONN_LIMIT   nginx, per client address
    FAKELENS_MAX_UPLOAD_BYTES and the other FAKELENS_* gateway settings (gateway/config.py)
Logs go to .run/logs/<service>.log.

However the launcher is stopped (Ctrl-C once or twice, Ctrl-D, SIGTERM once or repeated, SIGHUP
when its terminal closes, or that terminal hung up with no signal sent, as under `setsid`, or
relayed as end of input, as under `script -c`) it stops everything it started; a second signal during the shutdown is
acknowledged, not obeyed halfway. Each child is also told to die with the launcher
(PR_SET_PDEATHSIG), so not even a SIGKILL of the launcher leaves one behind.
"""
from __future__ import annotations

import ctypes
import os
import re
import select
import shutil
import signal
import socket
import string
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import requests
import yaml

from gateway.config import from_env as gateway_settings
from stack import twin

ROOT = Path(__file__).resolve().parent.parent
PROXY_TEMPLATE = ROOT / "proxy" / "fakelens.conf.template"
PORT_WAIT_S = 30  # a stack that was just killed may still be letting go of its ports
PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A service could not start; the message says which and why."""


@dataclass
class Ports:
    gateway: int = 8080  # the front door (nginx); gunicorn listens on a unix socket behind it
    triton_http: int = 8000
    triton_grpc: int = 8001
    triton_metrics: int = 8002
    prometheus: int = 9090

    @classmethod
    def from_env(cls) -> Ports:
        """Each port from <FIELD>_PORT in the environment (GATEWAY_PORT, TRITON_HTTP_PORT, ...)."""
        return cls(**{f.name: int(os.environ.get(f"{f.name.upper()}_PORT", f.default)) for f in fields(cls)})


@dataclass
class Limits:
    """nginx's limits per client address on /v1/: requests per second (with a burst), requests in progress."""
    rate: int = 50
    burst: int = 100
    connections: int = 32

    @classmethod
    def from_env(cls) -> Limits:
        env = {"rate": "FAKELENS_RATE_LIMIT", "burst": "FAKELENS_RATE_BURST", "connections": "FAKELENS_CONN_LIMIT"}
        return cls(**{f.name: int(os.environ.get(env[f.name], f.default)) for f in fields(cls)})


UNLIMITED = Limits(rate=1_000_000, burst=1_000_000, connections=65_000)  # benchmarks from one address (nginx: < 65536)


def free_ports(n: int) -> list[int]:
    """n distinct ports that were free on loopback a moment ago (tests and benchmarks)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As servers bind: a port whose last connections sit in TIME_WAIT is free to listen on.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def triton_paths() -> dict[str, Path]:
    """Where the nvidia-pytriton wheel keeps tritonserver, the python backend and its libraries."""
    try:
        import pytriton
    except ImportError as exc:
        raise StackError("nvidia-pytriton is not installed (run `make deps`)") from exc
    base = Path(pytriton.__file__).parent / "tritonserver"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = {"server": base / "bin" / "tritonserver",
             "backend": base / "backends" / "python",
             "stub": base / "python_backend_stubs" / ver / "triton_python_backend_stub",
             "libs": Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"}
    for name, p in paths.items():
        if not p.exists():
            raise StackError(f"tritonserver's {name} not found at {p} (is nvidia-pytriton complete?)")
    return paths


def render_proxy_config(values: dict[str, str]) -> str:
    """proxy/fakelens.conf.template with the ${FAKELENS_*} values filled in, as the nginx image's envsubst does;
    nginx's own $variables are left alone."""
    text = string.Template(PROXY_TEMPLATE.read_text()).safe_substitute(values)
    left = sorted(set(re.findall(r"\$\{(FAKELENS_\w+)\}", text)))
    if left:
        raise StackError(f"{PROXY_TEMPLATE} has unfilled values: {left}")
    return text


def http_ok_unix(path: Path, url_path: str = "/healthz", timeout: float = 1.0) -> bool:
    """GET over a unix socket (gunicorn behind nginx); True on a 200."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
            s.sendall(f"GET {url_path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            return s.recv(64).split(b" ")[1:2] == [b"200"]
        except OSError:
            return False


def _die_with(parent: int):
    """preexec_fn: the child gets SIGTERM when the launcher dies, however it dies."""
    def prepare() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)
    return prepare


def prometheus_config(ports: Ports) -> dict:
    """dashboard/prometheus.yml with compose host names swapped for this machine's loopback ports."""
    cfg = yaml.safe_load((ROOT / "dashboard" / "prometheus.yml").read_text())
    local = {"triton": ports.triton_metrics, "gateway": ports.gateway, "prometheus": ports.prometheus}
    for job in cfg["scrape_configs"]:
        for sc in job["static_configs"]:
            sc["targets"] = [f"127.0.0.1:{local[job['job_name']]}"]
    return cfg


@dataclass
class Service:
    name: str
    argv: list[str]
    ready_url: str  # http://... or unix:<socket path>
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def ready(self) -> bool:
        if self.ready_url.startswith("unix:"):
            return http_ok_unix(Path(self.ready_url.removeprefix("unix:")))
        try:
            return requests.get(self.ready_url, timeout=1).status_code == 200
        except requests.RequestException:
            return False


class Stack:
    """Start with `start()` (or `with Stack(...)`); `stop()` ends every process group it started."""

    def __init__(self, ports: Ports | None = None, run_dir: Path = ROOT / ".run",
                 repository: Path = ROOT / "model_repository", workers: int | None = None, threads: int | None = None,
                 model_threads: int = 1, services: tuple[str, ...] = ("triton", "gateway", "prometheus"),
                 startup_timeout: float = 120, limits: Limits | None = None, gateway_env: dict[str, str] | None = None,
                 database_url: str | None = None):
        self.ports = ports or Ports.from_env()
        self.run_dir = run_dir
        self.repository = repository
        # None: gunicorn_conf.py's defaults, or GATEWAY_WORKERS / GATEWAY_THREADS from the environment
        self.workers, self.threads = workers, threads
        self.model_threads = model_threads  # torch threads per Triton model instance
        self.limits = limits or Limits.from_env()
        # The gateway is only ever reached through its proxy
        self.wanted = tuple(n for name in services for n in ((name, "proxy") if name == "gateway" else (name,)))
        self.timeout = startup_timeout
        self.gateway_env = gateway_env or {}  # FAKELENS_* settings for this stack's gateway alone (benchmarks, tests)
        # `make up` keeps its records where the gateway's settings say (.data/, or FAKELENS_DATABASE_URL); a stack
        # in any other run folder (tests, benchmarks) keeps them in that folder, away from the user's.
        if database_url is None and run_dir != ROOT / ".run":
            database_url = f"sqlite:///{run_dir / 'fakelens.db'}"
        self.database_url = database_url
        self.started: list[Service] = []

    # -- service definitions -------------------------------------------------
    def triton(self) -> Service:
        paths = triton_paths()
        backends = self.run_dir / "backends" / "python"
        if backends.exists():
            shutil.rmtree(backends)
        backends.mkdir(parents=True)
        for src in (paths["backend"] / "libtriton_python.so", paths["backend"] / "triton_python_backend_utils.py",
                    paths["stub"]):
            (backends / src.name).symlink_to(src)
        twin.derive(self.repository, self.run_dir / "model_repository", self.model_threads)
        libdir = sysconfig.get_config_var("LIBDIR")
        env = {  # the stub finds its interpreter as `python3` on PATH: put this venv first
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": f"{paths['libs']}:{libdir}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
        p = self.ports
        argv = [str(paths["server"]), f"--model-repository={self.run_dir / 'model_repository'}",
                f"--backend-directory={self.run_dir / 'backends'}",
                "--http-address=127.0.0.1", f"--http-port={p.triton_http}",
                "--grpc-address=127.0.0.1", f"--grpc-port={p.triton_grpc}",
                "--metrics-address=127.0.0.1", f"--metrics-port={p.triton_metrics}",
                "--allow-metrics=true", "--disable-auto-complete-config",
                "--metrics-config=summary_latencies=true", "--model-control-mode=explicit", "--load-model=*"]
        return Service("triton", argv, f"http://127.0.0.1:{p.triton_http}/v2/health/ready", env)

    def gateway(self) -> Service:
        mp = self.run_dir / "prometheus-multiproc"
        if mp.exists():
            shutil.rmtree(mp)  # stale files from a previous run would be summed into /metrics
        mp.mkdir(parents=True)
        env = {"PROMETHEUS_MULTIPROC_DIR": str(mp),
               "FAKELENS_TRITON_URL": f"127.0.0.1:{self.ports.triton_grpc}",
               "GATEWAY_BIND": f"unix:{self.socket}"}
        env.update({k: str(v) for k, v in (("GATEWAY_WORKERS", self.workers), ("GATEWAY_THREADS", self.threads)) if v})
        if self.database_url:
            env["FAKELENS_DATABASE_URL"] = self.database_url
        env.update(self.gateway_env)
        argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn_conf.py")]
        return Service("gateway", argv, f"unix:{self.socket}", env)

    @property
    def socket(self) -> Path:
        return self.run_dir / "gateway.sock"

    def proxy(self) -> Service:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise StackError("nginx not found (apt-get install nginx, or `make up`)")
        conf = self.run_dir / "nginx"
        conf.mkdir(parents=True, exist_ok=True)
        logs = self.run_dir / "logs"
        (conf / "fakelens.conf").write_text(render_proxy_config({
            "FAKELENS_LISTEN": f"127.0.0.1:{self.ports.gateway}", "FAKELENS_UPSTREAM": f"unix:{self.socket}",
            "FAKELENS_ACCESS_LOG": str(logs / "nginx-access.log"),
            "FAKELENS_MAX_UPLOAD_BYTES": str(gateway_settings()["MAX_CONTENT_LENGTH"]),
            "FAKELENS_RATE_LIMIT": str(self.limits.rate), "FAKELENS_RATE_BURST": str(self.limits.burst),
            "FAKELENS_CONN_LIMIT": str(self.limits.connections)}))
        # What the nginx image's own nginx.conf provides around conf.d/, with every path under run_dir.
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers run as the launching user
        temp = "\n".join(f"    {kind}_temp_path {conf / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (conf / "nginx.conf").write_text(f"""{user}worker_processes 1;
daemon off;
pid {conf / 'nginx.pid'};
error_log {logs / 'nginx-error.log'} warn;
events {{ worker_connections 4096; }}
http {{
{temp}
    include {conf / 'fakelens.conf'};
}}
""")
        argv = [binary, "-p", str(conf), "-c", str(conf / "nginx.conf"), "-e", str(logs / "nginx-error.log")]
        return Service("proxy", argv, f"http://127.0.0.1:{self.ports.gateway}/healthz")

    def prometheus(self) -> Service:
        binary = shutil.which("prometheus")
        if not binary:
            raise StackError("prometheus not found on PATH (apt-get install prometheus, or `make deps`)")
        cfg = self.run_dir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(prometheus_config(self.ports)))
        argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.ports.prometheus}"]
        return Service("prometheus", argv, f"http://127.0.0.1:{self.ports.prometheus}/-/ready")

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Stack:
        ports = {"triton": [self.ports.triton_http, self.ports.triton_grpc, self.ports.triton_metrics],
                 "gateway": [], "proxy": [self.ports.gateway], "prometheus": [self.ports.prometheus]}
        deadline = time.time() + PORT_WAIT_S
        while taken := [f"{port} ({name})" for name in self.wanted for port in ports[name] if not port_free(port)]:
            if time.time() > deadline:
                raise StackError(f"port(s) already in use: {', '.join(taken)}; set the *_PORT variables to free ones")
            time.sleep(0.5)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            for name in self.wanted:
                self._start(getattr(self, name)())
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, svc: Service) -> None:
        log = self.run_dir / "logs" / f"{svc.name}.log"
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            # Its own session: a Ctrl-C in the terminal reaches the launcher alone, which stops the rest in order.
            svc.proc = subprocess.Popen(svc.argv, cwd=ROOT, env={**os.environ, **svc.env}, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_die_with(os.getpid()))
        self.started.append(svc)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if svc.proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise StackError(f"{svc.name} exited with code {svc.proc.returncode}; end of {log}:\n{tail}")
            if svc.ready():
                return
            time.sleep(0.25)
        raise StackError(f"{svc.name} not ready after {self.timeout:.0f} s ({svc.ready_url}); see {log}")

    @staticmethod
    def _terminate(svc: Service, grace: float = 15) -> None:
        """SIGTERM the service's process group; SIGKILL whatever outlives the grace period."""
        if svc.proc.poll() is None:
            try:
                os.killpg(svc.proc.pid, signal.SIGTERM)
                svc.proc.wait(grace)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                pass
        try:  # children (python-backend stubs, gunicorn workers) share the group
            os.killpg(svc.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        svc.proc.wait()

    def stop(self) -> None:
        """Stop every service, newest first."""
        for svc in reversed(self.started):
            self._terminate(svc)
        self.started.clear()

    def stop_service(self, name: str) -> None:
        svc = next(s for s in self.started if s.name == name)
        self._terminate(svc)
        self.started.remove(svc)

    def start_service(self, name: str) -> None:
        self._start(getattr(self, name)())

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Shutdown(Exception):
    """A signal asked the launcher to stop."""


def say(text: str, err: bool = False) -> None:
    """Print, unless the terminal is gone (SIGHUP): stopping must not fail for want of a screen."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        pass


def input_ended(fd: int = 0) -> bool:
    """Whether the terminal on `fd` has reached end of input. Typed lines are read and ignored."""
    if not select.select([fd], [], [], 0)[0]:
        return False
    try:
        if os.tcgetpgrp(fd) != os.getpgrp():
            return False  # a background job: reading its terminal would stop it (SIGTTIN)
    except OSError:
        pass  # not our controlling terminal (setsid): reading cannot stop us
    try:
        return os.read(fd, 4096) == b""
    except OSError:
        return True  # hung up


def main() -> None:
    stack = Stack()
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        if stopping:  # Ctrl-C twice, make forwarding SIGTERM, systemd repeating it: finish the shutdown
            say(f"{signal.Signals(signum).name}: already stopping everything, one moment ...")
            return
        stopping = True
        raise Shutdown(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        say("starting tritonserver, gateway, nginx and prometheus ...")
        stack.start()
        p = stack.ports
        say(f"""
fakelens is up (logs in {stack.run_dir / 'logs'}):
  upload page   http://127.0.0.1:{p.gateway}/
  API           curl -F image=@photo.jpg http://127.0.0.1:{p.gateway}/v1/predict
  Prometheus    http://127.0.0.1:{p.prometheus}/
  Triton        http://127.0.0.1:{p.triton_http}/v2/health/ready
Ctrl-C stops everything.""")
        terminal = [fd for fd in (0, 1, 2) if os.isatty(fd)]
        while all(s.proc.poll() is None for s in stack.started):
            # Under `setsid make up` no SIGHUP reaches us when the terminal closes, but a hung-up terminal stops
            # being one (its ioctls fail). Under `script -c "make up"`, script relays the close as end of input.
            if terminal and not any(os.isatty(fd) for fd in terminal):
                raise Shutdown("SIGHUP (the terminal is gone)")
            if 0 in terminal and input_ended():
                raise Shutdown("end of input (Ctrl-D, or the terminal closed)")
            time.sleep(1)
        dead = [s.name for s in stack.started if s.proc.poll() is not None]
        say(f"{', '.join(dead)} exited; stopping the rest (see {stack.run_dir / 'logs'})", err=True)
        stopping = True
        raise SystemExit(1)
    except StackError as exc:
        stopping = True
        say(f"fakelens: {exc}", err=True)
        raise SystemExit(1) from None
    except Shutdown as sig:
        say(f"\n{sig}: stopping ...")
    finally:
        stopping = True
        stack.stop()
        say("stopped.")


if __name__ == "__main__":
    main()
