"""Drawing once per frame for every sink that needs pixels (video, window)."""
from __future__ import annotations

import numpy as np

from uar_stream.flow import StreamResult
from uar_stream.pipeline.faces import to_bgr
from uar_stream.pipeline.overlay import Overlay


class FrameDrawer:
    """``draw(result)``: the frame with the overlay, as BGR; the last frame drawn is kept,
    so sinks sharing one drawer draw each frame once."""

    def __init__(self, overlay: Overlay | None):
        self.overlay = overlay  # None: frames pass through undrawn (overlay.enabled: false)
        self._last: tuple[StreamResult, np.ndarray] | None = None

    def draw(self, result: StreamResult) -> np.ndarray:
        """The annotated BGR image of ``result`` (do not modify it: it is shared)."""
        if self._last is not None and self._last[0] is result:
            return self._last[1]
        out = to_bgr(result.image).copy()
        if self.overlay is not None:
            self.overlay.annotate(out, result.faces, result.fps)
        self._last = (result, out)
        return out
