"""The front door (nginx, proxy/fakelens.conf.template) with the real stack behind it: slow clients do not
starve normal uploads, a flooding client gets 429s while another client's uploads succeed, nginx's own
refusals are JSON like the gateway's."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from stack.launch import Limits

BOUNDARY = "fakelensboundary"


def multipart(raw: bytes, name: str = "x.jpg") -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + raw + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_from(source: str, port: int, body: bytes, timeout: float = 30) -> tuple[int, dict, dict]:
    """POST /v1/predict from a given loopback address (127.0.0.0/8 is all ours), so nginx sees another client."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("POST", "/v1/predict", body=body,
                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def slow_client(source: str, port: int, stop: threading.Event) -> None:
    """Announces a 100 kB upload, then sends one byte every 2 s (within nginx's 10 s body timeout)."""
    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as s:
        s.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode())
        while not stop.wait(2):
            try:
                s.sendall(b"-")
            except OSError:
                return


def test_64_slow_clients_do_not_starve_normal_uploads(stack, cifake_samples):
    port = stack.ports.gateway
    stop = threading.Event()
    slow = [threading.Thread(target=slow_client, args=(f"127.0.1.{i + 1}", port, stop), daemon=True) for i in range(64)]
    for t in slow:
        t.start()
    time.sleep(3)  # every slow client has sent its headers and holds a connection
    statuses, start = [], time.time()
    try:
        while time.time() - start < 30:
            name, raw, _ = cifake_samples[len(statuses) % len(cifake_samples)]
            statuses.append(post_from("127.0.0.1", port, multipart(raw, name), timeout=10)[0])
    finally:
        stop.set()
    print(f"\n64 slow clients: {len(statuses)} normal uploads in 30 s, statuses {sorted(set(statuses))}")
    assert len(statuses) >= 30 and set(statuses) == {200}


def test_a_flooding_client_gets_429_json_while_another_is_served(stack, cifake_samples):
    port = stack.ports.gateway
    flood_body = multipart(b"not an image")  # cheap for the gateway: a 400 unless nginx refuses first
    limits = Limits.from_env()
    with ThreadPoolExecutor(16) as pool:
        flood = pool.map(lambda _: post_from("127.0.0.3", port, flood_body), range(limits.burst + 300))
        normal = [post_from("127.0.0.1", port, multipart(raw, name))[0] for name, raw, _ in cifake_samples[:10]]
        flood = list(flood)
    refused = [(headers, body) for status, headers, body in flood if status == 429]
    print(f"\nflood: {len(refused)} of {len(flood)} refused with 429; the other client: {normal}")
    assert refused and normal == [200] * 10
    headers, body = refused[0]
    assert body["error"] == "rate_limited" and body["message"] and int(headers["Retry-After"]) >= 1
    assert {s for s, _, _ in flood} <= {400, 429}


def test_nginx_refusals_are_json(stack):
    big = b"\0" * (21 * 1024 * 1024)
    status, _, body = post_from("127.0.0.4", stack.ports.gateway, multipart(big))
    assert status == 413 and body["error"] == "too_large"
    resp = requests.get(f"http://127.0.0.1:{stack.ports.gateway}/v1/scans/abc%00", timeout=10)  # nginx refuses it
    assert resp.status_code == 400 and resp.json()["error"] == "bad_request"
    resp = requests.get(f"http://127.0.0.1:{stack.ports.gateway}/bad_request.json", timeout=10)  # nginx's own 404
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    resp = requests.get(f"http://127.0.0.1:{stack.ports.gateway}/metrics", timeout=10)
    assert resp.status_code == 200 and "fakelens_http_request_duration_seconds" in resp.text
    log = (stack.run_dir / "logs" / "nginx-access.log").read_text()
    assert "request_time=" in log and "POST /v1/predict" in log
