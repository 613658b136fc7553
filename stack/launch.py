"""The embedded CPU stack: tritonserver (python-backend twin) -> gunicorn gateway -> Prometheus.

    python -m stack.launch        # what `make up` runs; Ctrl-C stops everything

Ports come from GATEWAY_PORT, TRITON_HTTP_PORT, TRITON_GRPC_PORT,
TRITON_METRICS_PORT and PROMETHEUS_PORT. Logs go to .run/logs/<service>.log.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from stack import twin

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = {"GATEWAY_PORT": 8080, "TRITON_HTTP_PORT": 8000, "TRITON_GRPC_PORT": 8001,
                 "TRITON_METRICS_PORT": 8002, "PROMETHEUS_PORT": 9090}


class StackError(RuntimeError):
    """A service could not start; the message says which and why."""


@dataclass
class Ports:
    gateway: int = 8080
    triton_http: int = 8000
    triton_grpc: int = 8001
    triton_metrics: int = 8002
    prometheus: int = 9090

    @classmethod
    def from_env(cls) -> "Ports":
        values = [int(os.environ.get(k, v)) for k, v in DEFAULT_PORTS.items()]
        return cls(*values)


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
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None


class Stack:
    """Start with `start()` (or `with Stack(...)`); `stop()` ends every process group it started."""

    def __init__(self, ports: Ports | None = None, run_dir: Path = ROOT / ".run",
                 repository: Path = ROOT / "model_repository", workers: int = 2, threads: int = 8,
                 model_threads: int = 1, services: tuple[str, ...] = ("triton", "gateway", "prometheus"),
                 startup_timeout: float = 120):
        self.ports = ports or Ports.from_env()
        self.run_dir = run_dir
        self.repository = repository
        self.workers, self.threads = workers, threads
        self.model_threads = model_threads  # torch threads per Triton model instance
        self.wanted = services
        self.timeout = startup_timeout
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
        self.contracts = twin.derive(self.repository, self.run_dir / "model_repository", self.model_threads)
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
               "GATEWAY_BIND": f"127.0.0.1:{self.ports.gateway}",
               "GATEWAY_WORKERS": str(self.workers), "GATEWAY_THREADS": str(self.threads)}
        argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn_conf.py"),
                "gateway.app:create_app()"]
        return Service("gateway", argv, f"http://127.0.0.1:{self.ports.gateway}/healthz", env)

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
    def start(self) -> "Stack":
        ports = {"triton": [self.ports.triton_http, self.ports.triton_grpc, self.ports.triton_metrics],
                 "gateway": [self.ports.gateway], "prometheus": [self.ports.prometheus]}
        taken = [f"{port} ({name})" for name in self.wanted for port in ports[name] if not port_free(port)]
        if taken:
            raise StackError(f"port(s) already in use: {', '.join(taken)}; set the *_PORT variables to free ones")
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
            svc.proc = subprocess.Popen(svc.argv, cwd=ROOT, env={**os.environ, **svc.env}, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(svc)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if svc.proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise StackError(f"{svc.name} exited with code {svc.proc.returncode}; end of {log}:\n{tail}")
            try:
                if requests.get(svc.ready_url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
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

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    stack = Stack()

    def shutdown(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    try:
        print("starting tritonserver, gateway and prometheus ...", flush=True)
        stack.start()
        p = stack.ports
        print(f"""
fakelens is up (logs in {stack.run_dir / 'logs'}):
  upload page   http://127.0.0.1:{p.gateway}/
  API           curl -F image=@photo.jpg http://127.0.0.1:{p.gateway}/v1/predict
  Prometheus    http://127.0.0.1:{p.prometheus}/
  Triton        http://127.0.0.1:{p.triton_http}/v2/health/ready
Ctrl-C stops everything.""", flush=True)
        while all(s.proc.poll() is None for s in stack.started):
            time.sleep(1)
        dead = [s.name for s in stack.started if s.proc.poll() is not None]
        print(f"{', '.join(dead)} exited; stopping the rest (see {stack.run_dir / 'logs'})", file=sys.stderr)
        sys.exit(1)
    except StackError as exc:
        sys.exit(f"fakelens: {exc}")
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
