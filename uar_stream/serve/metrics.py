"""``GET /metrics``: the Prometheus text exposition format (version 0.0.4), per camera."""
from __future__ import annotations

from uar_stream.serve.camera import STATES
from uar_stream.serve.multistream import MultiStream

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples: list[tuple[dict, float | None]]) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            if value is None:
                continue
            lab = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lab}}} {float(value):g}" if lab else f"{name} {float(value):g}")


def render(ms: MultiStream) -> str:
    """Every metric of every camera and of the shared engine batcher."""
    w = _Writer()
    cams = ms.cameras()
    st = [(c, c.status()) for c in cams]
    w.family("uar_frames_total", "counter", "Frames analysed.",
             [({"camera": c.id}, s["frames"]) for c, s in st])
    w.family("uar_faces_total", "counter", "Faces analysed.", [({"camera": c.id}, s["faces"]) for c, s in st])
    w.family("uar_routes_total", "counter", "Faces per route.",
             [({"camera": c.id, "route": r}, n) for c, s in st for r, n in s["routes"].items()])
    w.family("uar_dropped_frames_total", "counter", "Frames read but never analysed (newest frame wins).",
             [({"camera": c.id}, s["dropped"]) for c, s in st])
    w.family("uar_reconnects_total", "counter", "Live streams restored after a loss.",
             [({"camera": c.id}, s["reconnects"]) for c, s in st])
    w.family("uar_fps", "gauge", "Frames analysed per second, last second.",
             [({"camera": c.id}, s["fps"]) for c, s in st])
    w.family("uar_latency_ms", "gauge", "Capture-to-result latency over the last 300 frames.",
             [({"camera": c.id, "quantile": q}, s[k]) for c, s in st
              for q, k in (("0.5", "latency_ms_p50"), ("0.95", "latency_ms_p95"))])
    w.family("uar_camera_state", "gauge", "1 for the camera's current state.",
             [({"camera": c.id, "state": x}, 1.0 if s["state"] == x else 0.0) for c, s in st for x in STATES])
    b = ms.stats()
    w.family("uar_engine_calls_total", "counter", "Engine calls (one batch across cameras each).",
             [({}, b.calls)])
    w.family("uar_engine_faces_total", "counter", "Faces through the engine.", [({}, b.faces)])
    w.family("uar_batch_fill", "gauge", "Mean faces per engine call since start.", [({}, b.fill)])
    w.family("uar_batch_fill_max", "gauge", "Largest engine batch since start.", [({}, b.max_fill)])
    w.family("uar_batch_queue_depth", "gauge", "Face crops waiting for the engine now.",
             [({}, b.queue_depth)])
    return "\n".join(w.lines) + "\n"
