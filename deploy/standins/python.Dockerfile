# Stand-in for python:3.11-slim (tests only, never a default): `python` and `pip` on PATH install into the image's
# own interpreter, with its C headers (pdqhash builds against them), as the official image's /usr/local Python does.
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3-dev && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python
# This machine reaches PyPI only with its own CA bundle (copied into the base when it was built).
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/host-ca.crt LANG=C.UTF-8
CMD ["python3"]
