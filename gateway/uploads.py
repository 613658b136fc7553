"""One upload examined the same way wherever it is judged (the gateway, `make evaluate`):
the models' view of its pixels, the provenance its bytes and its pixels carry, and its hashes."""
from __future__ import annotations

import numpy as np

from gateway import images, known, provenance


def examine(raw: bytes, max_pixels: int, watermarks: bool = True, hashes: bool = False
            ) -> tuple[images.Upload, dict, dict | None]:
    """(the Upload, its provenance, with `hashes` {"sha256", "pdq", "pdq_quality"});
    raises images.BadImage for what cannot be judged."""
    rgb = images.open_rgb(raw, max_pixels)
    found = provenance.read(raw, np.asarray(rgb) if watermarks else None)
    hashed = None
    if hashes:
        pdq, quality = known.pdq_of(rgb)
        hashed = {"sha256": known.sha256(raw), "pdq": pdq, "pdq_quality": quality}
    return images.view(rgb), found, hashed
