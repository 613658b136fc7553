#!/bin/sh
# The host's project venv (mounted at its own path, STANDIN_VENV) runs the stand-in; PYTHONPATH is the mounted checkout.
set -eu
: "${STANDIN_VENV:?mount the project venv and set STANDIN_VENV (deploy/standins/compose.standins.yml)}"
export PYTHONPATH=/opt/fakelens
exec "$STANDIN_VENV/bin/python" /opt/standin/triton_standin.py "$@"
