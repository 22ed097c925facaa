"""MTCNN face detection (Zhang et al. 2016), a second proposer for the ``accurate`` detector.

Three small cascaded CNNs trained on WIDER FACE: PNet scans an image pyramid (12 px windows,
stride 2), RNet re-scores its candidates on 24 px crops, ONet on 48 px crops gives the final
score, box and 5 landmarks. The architecture, pyramid (scale factor 0.709), thresholds
(0.6, 0.7, 0.7), normalisation and box calibration follow facenet-pytorch 2.6.0 (MIT), whose
weights ``mtcnn_weights/mtcnn.safetensors`` holds (converted by tools/convert_mtcnn_weights.py,
licence in ``mtcnn_weights/``). The file's sha256 is checked before it is read; nothing is
unpickled. No torchvision: NMS is the numpy one below.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from uar_stream.errors import ModelError
from uar_stream.model.store import file_sha256

WEIGHTS = Path(__file__).resolve().parent / "mtcnn_weights" / "mtcnn.safetensors"
#: sha256 of WEIGHTS (also in mtcnn_weights/mtcnn.safetensors.sha256, written by the converter).
WEIGHTS_SHA256 = "f3c1b5d8b3fc71914f6993fc5a6d83b2b7583dd8fe74d37664aa3f5d756c5c22"
#: torch threads of one pass. The nets are tiny: on 2 busy cores a 2-thread PNet pass took ~150 ms
#: where 1 thread took ~1.5 ms (OpenMP waits); detection also shares the cores with other stages.
THREADS = 1
#: Landmark order of MTCNN, in image terms: the image-left eye (the subject's right) first.
EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, NOSE, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = range(5)


class _PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), 1)


class _RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # (N, C, W, H) order before flattening: the dense weights were trained on that layout
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), 1)


class _ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), 1)


def load_nets(path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256) -> tuple[nn.Module, nn.Module, nn.Module]:
    """PNet, RNet, ONet from the safetensors file, after checking its sha256."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ModelError(f"{path}: MTCNN weights missing (tools/convert_mtcnn_weights.py writes them)")
    if file_sha256(Path(path)) != sha256:
        raise ModelError(f"{path}: sha256 differs from the expected MTCNN weights (file changed or corrupt)")
    tensors = load_file(str(path))
    nets = []
    for name, net in (("pnet", _PNet()), ("rnet", _RNet()), ("onet", _ONet())):
        net.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
        nets.append(net.eval())
    return nets[0], nets[1], nets[2]


@contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class MTCNN:
    """MTCNN on RGB uint8 images; ``detect`` gives (score, box xyxy, landmarks (5, 2)) per face.

    ``min_face_px``: the smallest face searched (the pyramid's first scale is 12 / min_face_px);
    ``max_scale_px``: the longest side of the largest pyramid level (a cap for big frames:
    faces under ``min_face_px`` * side / max_scale_px are then not searched); 0: no cap.
    """

    def __init__(self, min_face_px: float = 20.0, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709,
                 max_scale_px: int = 0, path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256):
        self.pnet, self.rnet, self.onet = load_nets(path, sha256)
        self.min_face_px, self.thresholds, self.factor = float(min_face_px), tuple(thresholds), factor
        self.max_scale_px = max_scale_px

    def scales(self, w: int, h: int) -> list[float]:
        """The pyramid: from 12 / min_face_px down by ``factor`` while the image is >= 12 px."""
        s = 12.0 / self.min_face_px
        if self.max_scale_px:
            s = min(s, self.max_scale_px / max(w, h))
        out = []
        while min(w, h) * s >= 12:
            out.append(s)
            s *= self.factor
        return out

    def detect(self, rgb: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Faces of an RGB uint8 image, best first: (score, box xyxy float64, landmarks (5, 2)
        float32 in :data:`EYE_IMAGE_LEFT` ... order), in the image's pixels."""
        rgb = np.ascontiguousarray(rgb)
        with torch.inference_mode(), _threads(THREADS):
            boxes = self._propose(rgb)
            if len(boxes):
                boxes = self._refine(rgb, boxes)
            if not len(boxes):
                return []
            boxes, points = self._output(rgb, boxes)
        return [(float(b[4]), b[:4].astype(np.float64), p.astype(np.float32))
                for b, p in sorted(zip(boxes, points, strict=True), key=lambda bp: -bp[0][4])]

    def _propose(self, rgb: np.ndarray) -> np.ndarray:
        """Stage 1: PNet over the pyramid; (N, 5) calibrated square boxes with scores."""
        h, w = rgb.shape[:2]
        found = []
        for s in self.scales(w, h):
            im = cv2.resize(rgb, (int(w * s + 1), int(h * s + 1)), interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet(_tensor(im[None]))
            prob, reg = prob[0, 1].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if not len(ys):
                continue
            # each output cell is a 12 px window at stride 2 of the scaled image
            x0, y0 = np.floor((2 * xs + 1) / s), np.floor((2 * ys + 1) / s)
            x1, y1 = np.floor((2 * xs + 12) / s), np.floor((2 * ys + 12) / s)
            b = np.stack([x0, y0, x1, y1, prob[ys, xs], *(reg[:, ys, xs])], 1)
            found.append(b[nms(b[:, :4], b[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 5))
        b = np.concatenate(found)
        b = b[nms(b[:, :4], b[:, 4], 0.7)]
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        out = np.stack([b[:, 0] + b[:, 5] * bw, b[:, 1] + b[:, 6] * bh,
                        b[:, 2] + b[:, 7] * bw, b[:, 3] + b[:, 8] * bh, b[:, 4]], 1)
        return _square(out)

    def _refine(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: RNet on 24 px crops; survivors calibrated and squared."""
        reg, prob = self.rnet(_tensor(_crops(rgb, boxes, 24)))
        score = prob[:, 1].numpy()
        keep = score > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg = reg.numpy()[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _square(_calibrate(boxes[pick], reg[pick]))

    def _output(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage 3: ONet on 48 px crops: final score, box and landmarks; NMS by the smaller box."""
        reg, pts, prob = self.onet(_tensor(_crops(rgb, boxes, 48)))
        score = prob[:, 1].numpy()
        keep = score > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg, pts = reg.numpy()[keep], pts.numpy()[keep]
        bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        points = np.stack([bw[:, None] * pts[:, :5] + boxes[:, :1] - 1,
                           bh[:, None] * pts[:, 5:] + boxes[:, 1:2] - 1], 2)
        boxes = _calibrate(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, by_min=True)
        return boxes[pick], points[pick]


def _tensor(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float, MTCNN's normalisation."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return (x - 127.5) * 0.0078125


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each box's pixels (zero outside the image, as in the original MTCNN), resized to size."""
    h, w = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for i, b in enumerate(np.trunc(boxes[:, :4]).astype(int)):
        x0, y0, x1, y1 = b[0] - 1, b[1] - 1, b[2], b[3]  # the 1-based corners of the original
        if x1 <= x0 or y1 <= y0:
            continue
        patch = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _calibrate(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Shift each box's corners by the regression, in units of its size."""
    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, :4] = boxes[:, :4] + reg[:, :4] * np.stack([bw, bh, bw, bh], 1)
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (the next net's crops are square)."""
    out = boxes.copy()
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(bw, bh)
    out[:, 0] = boxes[:, 0] + bw * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + bh * 0.5 - side * 0.5
    out[:, 2:4] = out[:, :2] + side[:, None]
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float, by_min: bool = False) -> np.ndarray:
    """Greedy NMS: indices kept, best first; overlap is IoU, or (``by_min``) the intersection
    over the smaller box."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = iw * ih
        den = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / den <= thr]
    return np.array(keep, int)
