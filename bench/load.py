"""A bounded load generator: N concurrent clients upload real images for a fixed time.

asyncio + aiohttp rather than threads: on a 2-core machine the client shares the
cores with the server, so it must cost as little CPU per request as possible.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import numpy as np


@dataclass
class Level:
    """What one concurrency level measured."""
    concurrency: int
    seconds: float
    # One (start offset s, HTTP status or 0 for no answer, latency ms) per request, in completion order.
    events: list[tuple[float, int, float]] = field(default_factory=list)

    def summary(self) -> dict:
        ok_ms = [ms for _, status, ms in self.events if status == 200]
        lat = np.array(ok_ms) if ok_ms else np.array([np.nan])
        statuses = Counter(str(status) for _, status, _ in self.events)
        ok = len(ok_ms)
        return {"concurrency": self.concurrency, "seconds": round(self.seconds, 2), "requests": len(self.events),
                "ok": ok, "errors": len(self.events) - ok, "statuses": dict(statuses),
                "rps": round(ok / self.seconds, 2), "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p95_ms": round(float(np.percentile(lat, 95)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "mean_ms": round(float(lat.mean()), 2)}


async def _client(session: aiohttp.ClientSession, url: str, images: list[bytes], offset: int, t0: float,
                  deadline: float, level: Level, timeout: float) -> None:
    i = offset
    while time.perf_counter() < deadline:
        form = aiohttp.FormData()
        form.add_field("image", images[i % len(images)], filename=f"{i}.jpg", content_type="image/jpeg")
        i += 1
        start = time.perf_counter()
        try:
            async with session.post(url, data=form, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError):
            status = 0
        level.events.append((start - t0, status, (time.perf_counter() - start) * 1000))


async def _run(url: str, images: list[bytes], concurrency: int, seconds: float, timeout: float) -> Level:
    level = Level(concurrency, seconds)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(_client(session, url, images, k * 997, start, deadline, level, timeout)
                               for k in range(concurrency)))
        level.seconds = time.perf_counter() - start  # includes the last requests' tails
    return level


def run_level(url: str, images: list[bytes], concurrency: int, seconds: float, timeout: float = 30) -> Level:
    """POST images to `url` from `concurrency` clients for `seconds`; every request bounded by `timeout`."""
    return asyncio.run(_run(url, images, concurrency, seconds, timeout))


def sample_test_images(count: int) -> list[tuple[str, bytes, int]]:
    """(member name, original JPEG bytes, label) from the official test archive, both classes, spread out."""
    import zipfile

    from training.data import data_dir

    with zipfile.ZipFile(data_dir() / "cifake-test.zip") as z:
        names = z.namelist()
        picks = [names[i] for i in np.linspace(0, len(names) - 1, count).astype(int)]
        return [(n, z.read(n), int(n.startswith("FAKE/"))) for n in picks]
