"""One upload examined the same way wherever it is judged (the gateway, `make evaluate`):
the models' view of its pixels, and the provenance its bytes and its pixels carry."""
from __future__ import annotations

import numpy as np

from gateway import images, provenance


def examine(raw: bytes, max_pixels: int, watermarks: bool = True) -> tuple[images.Upload, dict]:
    """(the Upload, its provenance); raises images.BadImage for what cannot be judged."""
    rgb = images.open_rgb(raw, max_pixels)
    return images.view(rgb), provenance.read(raw, np.asarray(rgb) if watermarks else None)
