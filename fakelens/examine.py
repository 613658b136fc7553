"""One upload examined the same way wherever it is judged (the gateway, `make evaluate`, the benchmarks):
the models' view of its pixels, the provenance its bytes and its pixels carry, and its hashes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fakelens import images, known, provenance
from fakelens.c2pa_reader import Reader


@dataclass(frozen=True)
class Examined:
    """An upload as the judge takes it."""
    raw: bytes
    upload: images.Upload
    provenance: provenance.Provenance
    hashes: known.Hashes | None  # None when the examiner does not hash (no banks to match)


@dataclass(frozen=True)
class Examiner:
    """Reads uploads; raises images.BadImage (or TooManyPixels) for what cannot be judged."""
    max_pixels: int = images.MAX_PIXELS
    watermarks: bool = True  # read generator watermarks from the pixels (off only to measure what they cost)
    hashes: bool = False  # hash each upload, to match it against the banks and to record it
    c2pa: Reader = field(default_factory=Reader)  # one per process: a child process of its own

    def __call__(self, raw: bytes) -> Examined:
        rgb = images.open_rgb(raw, self.max_pixels)
        found = provenance.read(raw, np.asarray(rgb) if self.watermarks else None, self.c2pa)
        return Examined(raw, images.view(rgb), found, known.hashes_of(raw, rgb) if self.hashes else None)
