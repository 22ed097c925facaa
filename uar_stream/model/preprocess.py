"""The canonical face crop and the ONE function that turns a crop into model input.

Training (FER+ 48x48 images) and inference (aligned live crops) both call
:func:`prepare_batch`, so the two cannot drift apart. The canonical landmark positions
were measured on FER+ itself (``tools/measure_canonical_crop.py``): run the same landmark
detector on upscaled FER+ PublicTest faces and take the median position of each point, so an
aligned live face is framed like an average FER2013 face.
"""
from __future__ import annotations

import numpy as np

#: Side of the square grayscale crop the models see (FER2013 is 48x48).
INPUT_SIZE = 48

#: Pixel normalisation, measured on FER+ train (mean and std of pixel/255).
PIXEL_MEAN = 0.5076
PIXEL_STD = 0.2544

#: Canonical positions, in 48x48 crop pixels (x, y), of the landmarks used for alignment:
#: right eye centre, left eye centre (subject's; image left/right), nose tip, mouth centre.
#: Median of the 'full' detector's keypoints over 970 FER+ PublicTest faces, made left-right
#: symmetric (training flips faces): eyes (15.5, 18.9) / (32.4, 18.4), nose (24.4, 28.8),
#: mouth (24.7, 36.6) as measured; IQR about 3 px per coordinate.
CANONICAL_LANDMARKS_48 = np.array(
    [
        [15.55, 18.65],  # subject's right eye (image left)
        [32.45, 18.65],  # subject's left eye (image right)
        [24.0, 28.8],  # nose tip
        [24.0, 36.6],  # mouth centre
    ],
    dtype=np.float32,
)


def canonical_landmarks(size: int = INPUT_SIZE) -> np.ndarray:
    """Canonical landmark positions scaled to a ``size`` x ``size`` crop."""
    return CANONICAL_LANDMARKS_48 * (size / 48.0)


def prepare_batch(crops: np.ndarray) -> np.ndarray:
    """uint8 grayscale crops (N, S, S) -> float32 model input (N, 1, S, S), normalised."""
    crops = np.asarray(crops)
    if crops.ndim != 3:
        raise ValueError(f"expected crops of shape (N, S, S), got {crops.shape}")
    x = crops.astype(np.float32) * (1.0 / 255.0)
    x = (x - PIXEL_MEAN) / PIXEL_STD
    return x[:, None, :, :]
