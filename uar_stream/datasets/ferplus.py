"""FER+ data for training: filtering, leakage removal, a calibration split."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uar_stream.errors import DataError
from uar_stream.labels import emotion_rows, majority_label, vote_distribution


@dataclass
class FaceSet:
    """Faces with their annotator votes. images: uint8 (N, S, S); votes: (N, 10)."""

    images: np.ndarray
    votes: np.ndarray
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def soft(self) -> np.ndarray:
        """Annotators' vote distribution over the 8 emotions, float32 (N, 8)."""
        return vote_distribution(self.votes).astype(np.float32)

    @property
    def majority(self) -> np.ndarray:
        """Most-voted emotion per face (N,)."""
        return majority_label(self.votes)

    def subset(self, idx: np.ndarray) -> "FaceSet":
        """The faces at ``idx`` (sha256 kept: it names the source file)."""
        return FaceSet(self.images[idx], self.votes[idx], self.sha256)


def load_npz(path: str | Path) -> FaceSet:
    """Load an .npz in the FER+ layout (``images`` uint8 [N,S,S], ``votes`` [N,>=8])."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as d:
            images, votes = d["images"], d["votes"]
    except KeyError as e:
        raise DataError(f"{path}: missing array {e} (need 'images' and 'votes')") from None
    except Exception as e:  # zip/format errors from numpy
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1] != images.shape[2]:
        raise DataError(f"{path}: 'images' must be uint8 [N,S,S], got {images.dtype} {images.shape}")
    if votes.ndim != 2 or votes.shape[0] != images.shape[0] or votes.shape[1] < 8:
        raise DataError(f"{path}: 'votes' must be [N,>=8] matching images, got {votes.shape}")
    return FaceSet(images, votes, content_sha256(images, votes))


def content_sha256(images: np.ndarray, votes: np.ndarray | None = None) -> str:
    """SHA-256 of a face set's arrays (images, then votes when given): how every manifest
    names the data a model was trained, calibrated or fitted on."""
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    if votes is not None:
        h.update(np.ascontiguousarray(votes).tobytes())
    return h.hexdigest()


def image_hashes(images: np.ndarray) -> list[bytes]:
    """16-byte digest per image: equal pixels, equal digest (for leakage checks)."""
    return [hashlib.blake2b(im.tobytes(), digest_size=16).digest() for im in images]


def training_faces(train: FaceSet, exclude: FaceSet | None) -> tuple[FaceSet, dict]:
    """FER+ filtering for training: drop rows where unknown/NF wins, and every train image
    that is pixel-identical to an image of ``exclude`` (the evaluation split: leakage)."""
    keep = emotion_rows(train.votes)
    n_nf = int((~keep).sum())
    n_leak = 0
    if exclude is not None:
        held = set(image_hashes(exclude.images))
        leak = np.array([h in held for h in image_hashes(train.images)])
        n_leak = int((leak & keep).sum())
        keep &= ~leak
    stats = {"rows": len(train), "dropped_unknown_or_nf": n_nf, "dropped_leakage": n_leak,
             "kept": int(keep.sum())}
    return train.subset(np.flatnonzero(keep)), stats


def calibration_split(faces: FaceSet, fraction: float, seed: int) -> tuple[FaceSet, FaceSet]:
    """Hold out a fraction of training faces (for the temperature), keeping pixel-identical
    duplicates on the same side so the held-out part is really unseen."""
    hashes = image_hashes(faces.images)
    uniq = sorted(set(hashes))
    rng = np.random.default_rng(seed)
    n_cal = int(round(len(uniq) * fraction))
    cal_set = set(uniq[i] for i in rng.permutation(len(uniq))[:n_cal])
    is_cal = np.array([h in cal_set for h in hashes])
    return faces.subset(np.flatnonzero(~is_cal)), faces.subset(np.flatnonzero(is_cal))
