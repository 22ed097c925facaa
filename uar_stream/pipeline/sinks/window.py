"""The window sink (``--show``): the annotated frames in an OpenCV window."""
from __future__ import annotations

import logging
import os
import sys

import cv2

from uar_stream.flow import RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.sinks.drawing import FrameDrawer

log = logging.getLogger("uar_stream")


def display_available() -> bool:
    """A window needs a display; without one, warn once and go on without."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        log.warning("--show: no display (DISPLAY is not set); running without a window")
        return False
    return True


class WindowSink:
    """Shows each annotated frame; stops showing (the run goes on) when the window cannot
    open or the user presses 'q'."""

    def __init__(self, drawer: FrameDrawer, title: str = "uar-stream"):
        self.drawer, self.title = drawer, title
        self.showing = False

    def open(self, info: StreamInfo) -> None:
        """Check for a display."""
        self.showing = display_available()

    def write(self, result: StreamResult) -> None:
        """Show the frame (drawn once, shared with other sinks)."""
        if not self.showing:
            return
        try:
            cv2.imshow(self.title, self.drawer.draw(result))
            self.showing = (cv2.waitKey(1) & 0xFF) != ord("q")
        except cv2.error as e:
            log.warning("--show: cannot open a window (%s); running without one",
                        str(e).strip().splitlines()[-1][:120])
            self.showing = False

    def close(self, summary: RunSummary) -> None:
        """Close the window."""
        try:
            cv2.destroyAllWindows()
        except cv2.error:
            pass
