# Stand-in for nvcr.io/nvidia/tritonserver:25.11-py3 (tests only, never a default): `tritonserver --model-repository=...
# --model-config-name=cpu` serves the committed repository on CPU, as `make up` does (pip tritonserver, python backend,
# the CPU twin of stack/twin.py); curl for the health check. The project's venv, its interpreter and the repository's
# code come in read-only from the host (compose.standins.yml): torch is not installed in any image.
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
COPY triton-entrypoint.sh triton_standin.py /opt/standin/
EXPOSE 8000 8001 8002
ENTRYPOINT ["/opt/standin/triton-entrypoint.sh"]
