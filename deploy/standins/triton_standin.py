"""`tritonserver ARGS` as the stock image takes them, run by the pip tritonserver on the CPU twin (as `make up` does).

The flags compose gives are passed on, except two the twin applies itself: --model-repository (the twin of that
repository is served instead) and --model-config-name=cpu (the twin is built from each model's configs/cpu.pbtxt).
"""
import os
import sys
import sysconfig
from pathlib import Path

from stack import twin
from stack.launch import triton_paths

WORK = Path("/tmp/triton-standin")


def main(argv: list[str]) -> None:
    if not argv or argv[0] != "tritonserver":
        os.execvp(argv[0], argv)
    flags = argv[1:]
    if "--model-config-name=cpu" not in flags:
        sys.exit("triton stand-in: serves each model's configs/cpu.pbtxt only; pass --model-config-name=cpu")
    repos = [f.split("=", 1)[1] for f in flags if f.startswith("--model-repository=")]
    if len(repos) != 1:
        sys.exit(f"triton stand-in: expected one --model-repository, got {repos}")
    paths = triton_paths()
    backends = WORK / "backends" / "python"
    backends.mkdir(parents=True, exist_ok=True)
    for src in (paths["backend"] / "libtriton_python.so", paths["backend"] / "triton_python_backend_utils.py",
                paths["stub"]):
        if not (backends / src.name).exists():
            (backends / src.name).symlink_to(src)
    twin.derive(Path(repos[0]), WORK / "models")
    kept = [f for f in flags if not f.startswith(("--model-repository=", "--model-config-name="))]
    env = {**os.environ,  # the stub finds its interpreter as `python3` on PATH
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "LD_LIBRARY_PATH": f"{paths['libs']}:{sysconfig.get_config_var('LIBDIR')}"}
    server = [str(paths["server"]), f"--model-repository={WORK / 'models'}", f"--backend-directory={WORK / 'backends'}",
              *kept]
    print("triton stand-in:", " ".join(server), flush=True)
    os.execve(server[0], server, env)


if __name__ == "__main__":
    main(sys.argv[1:])
