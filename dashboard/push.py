"""Push the dashboards to a running Grafana over its HTTP API.

    GRAFANA_URL=http://localhost:3000 GRAFANA_TOKEN=glsa_... python dashboard/push.py

GRAFANA_TOKEN is a service-account token (or "user:password" for basic auth).
Docker Compose already provisions the same files; this is for a Grafana you run elsewhere.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

DASHBOARDS = Path(__file__).resolve().parent / "grafana" / "dashboards"


def credential(token: str) -> str | tuple[str, str]:
    user, sep, password = token.partition(":")
    return (user, password) if sep else token


def push(url: str, token: str) -> list[str]:
    api = GrafanaApi.from_url(url, credential=credential(token), timeout=10)
    pushed = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        body = json.loads(path.read_text())
        body.pop("id", None)
        api.dashboard.update_dashboard({"dashboard": body, "overwrite": True, "message": "fakelens push"})
        pushed.append(f"{body['title']} ({body['uid']})")
    return pushed


def main() -> int:
    url, token = os.environ.get("GRAFANA_URL"), os.environ.get("GRAFANA_TOKEN")
    if not url or not token:
        print("set GRAFANA_URL (e.g. http://localhost:3000) and GRAFANA_TOKEN (a service-account token "
              "or user:password)", file=sys.stderr)
        return 2
    try:
        for name in push(url, token):
            print(f"pushed {name} to {url}")
    except GrafanaUnauthorizedError:
        print(f"Grafana at {url} refused the token (401): check GRAFANA_TOKEN", file=sys.stderr)
        return 1
    except (GrafanaClientError, GrafanaException) as exc:
        print(f"Grafana at {url} rejected the dashboards: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # connection refused, DNS, timeout: the client raises several types
        print(f"cannot reach Grafana at {url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
