"""A minimal kiosk: one decision per frame from the routed result of the main face.

    python examples/kiosk.py --source 0            # webcam
    python examples/kiosk.py --source rtsp://cam/1 --show
    python examples/kiosk.py --source clip.mp4 --max-seconds 10

The app never looks at raw probabilities: the route says what it may do.
  confident            -> show the expression label
  ambiguous            -> "could not read expression" (the face is clear, the expression is not)
  out_of_distribution  -> "please face the camera" (unfamiliar input: turned, occluded, dark)
  no face              -> "please face the camera"
"""
from __future__ import annotations

import argparse
import sys
import time

from uar_stream import Analyzer, Route, UarError, load_config


def decide(faces) -> str:
    """The kiosk's message for one frame (the largest face is the visitor)."""
    if not faces:
        return "please face the camera"
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    if face.route is Route.CONFIDENT:
        return f"you look: {face.label}"
    if face.route is Route.AMBIGUOUS:
        return "could not read expression"
    return "please face the camera"


def main(argv: list[str] | None = None) -> int:
    """Run the kiosk loop on ``--source``; print each new message. Returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="0", help="webcam index, stream URL or video file")
    ap.add_argument("--config", help="YAML config (e.g. configs/default.yaml)")
    ap.add_argument("--model", help="model directory")
    ap.add_argument("--show", action="store_true", help="show the camera with the message")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop after this long (0: never)")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, {"model.path": a.model})
    shown = None
    t0 = time.monotonic()
    try:
        # The Analyzer owns the model; the stream owns the camera and its threads. Leaving
        # the with-blocks (normally, by Ctrl-C or an error) releases both.
        with Analyzer(cfg) as an, an.stream(a.source) as stream:
            for result in stream:
                message = decide(result.faces)
                for ev in result.events:  # e.g. stream_lost / stream_restored for a kiosk log
                    if ev.kind.startswith("stream_"):
                        print(f"[{ev.kind}]", file=sys.stderr)
                if message != shown:  # print only changes; hysteresis keeps them rare
                    print(f"{result.frame.timestamp_s:7.2f}s  {message}", flush=True)
                    shown = message
                if a.show:
                    a.show = _show(an, result, message)
                    if a.show is None:  # 'q' pressed
                        break
                if a.max_seconds and time.monotonic() - t0 > a.max_seconds:
                    break
    except UarError as e:
        print(f"kiosk: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _show(an: Analyzer, result, message: str) -> bool | None:
    """True: keep showing; False: no display (go on without); None: the user pressed q."""
    import cv2

    frame = an.draw(result.image, result.faces)
    cv2.putText(frame, message, (10, frame.shape[0] - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                (255, 255, 255), 2, cv2.LINE_AA)
    try:
        cv2.imshow("kiosk", frame)
        return None if (cv2.waitKey(1) & 0xFF) == ord("q") else True
    except cv2.error:
        print("kiosk: no display; running without a window", file=sys.stderr)
        return False


if __name__ == "__main__":
    sys.exit(main())
