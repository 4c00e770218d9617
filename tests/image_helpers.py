"""Generated images for the image-reading and cnn tests (tests/data/test_images.py,
tests/train/test_cnn.py)."""

from pathlib import Path

import numpy as np


def bars(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy (size, size) uint8 image with a bright horizontal ("h") or vertical ("v") bar."""
    a = rng.integers(0, 40, (size, size)).astype(np.uint8)
    k = int(rng.integers(1, size - 1))
    if label == "h":
        a[k, :] = 255
    else:
        a[:, k] = 255
    return a


def image_folder(root: Path, per_label: int = 6, size: int = 8, seed: int = 0,
                 labels=("h", "v")) -> Path:
    """`root` with a sub-folder of `per_label` PNG bar images per label."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for lab in labels:
        (root / lab).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            Image.fromarray(bars(lab, size, rng), "L").save(root / lab / f"{i}.png")
    return root
