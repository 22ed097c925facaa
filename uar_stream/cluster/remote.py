"""The driver's side of a camera actor: what ``serve``'s HTTP layer reads of a camera
(``id``, ``state``, ``status()``, ``view``, ``stream.summary``), fed by pulling the actor.

A puller thread calls the actor's ``drain`` every ``poll_s``: the results go through the
same :class:`~uar_stream.serve.view.LiveView` and :class:`~uar_stream.serve.view.FeedSink`
as in one process, so the dashboard, ``/api/streams``, ``/api/events`` and ``/metrics``
do not know the camera runs elsewhere. When the actor dies, Ray restarts it; the puller
sees a fresh actor and starts it again where the stream had got to (see actor.py).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from uar_stream.cluster.options import CameraPlacement, ClusterError
from uar_stream.config import AnalyzerConfig
from uar_stream.errors import UarError
from uar_stream.flow import RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.sources import redact
from uar_stream.serve.camera import status_line
from uar_stream.serve.cameras import CameraConfig
from uar_stream.serve.hub import Hub
from uar_stream.serve.view import CameraEvent, FeedSink, LiveView

log = logging.getLogger("uar_stream.cluster")

#: A dead actor that has not come back after this long counts as failed.
RESTART_GRACE_S = 120.0


@dataclass
class RemoteStream:
    """What the HTTP layer reads of a camera's stream: its summary (final once ended)."""

    summary: RunSummary
    dropped: int = 0
    reconnects: int = 0


def unwrap(e: BaseException, camera_id: str) -> BaseException:
    """A task error from the actor as the one-line error it wraps (naming the camera)."""
    cause = e.cause if isinstance(e, RayTaskError) else None
    if isinstance(cause, UarError):
        return type(cause)(f"camera {camera_id}: {str(cause).splitlines()[0]}")
    return UarError(f"camera {camera_id}: {str(cause or e).strip().splitlines()[-1]}")


class RemoteCamera:
    """A camera actor seen from the driver (see the module docstring). ``start()`` starts
    generation 0 and raises the actor's one-line error (bad source, bad output)."""

    def __init__(self, config: CameraConfig, analyzer_config: AnalyzerConfig, actor, events: Hub,
                 on_result: Callable[[str, StreamResult], None], jpeg_quality: int = 80,
                 poll_s: float = 0.1, placement: CameraPlacement | None = None):
        self.config, self.id, self.source = config, config.id, redact(config.source)
        self.actor, self.poll_s, self.placement = actor, poll_s, placement
        self.view = LiveView(analyzer_config, jpeg_quality)
        self.feed = FeedSink(events, config.id, analyzer_config)
        self.events = events
        self.stream = RemoteStream(RunSummary(source=self.source))
        self._on_result = on_result
        self.generation = 0
        self.restarts = 0
        self.where: dict = {}
        self.batch: dict = {}
        self._base = 0  # frames of the earlier generations (where this one started)
        self._next = 0  # frames of this generation received so far
        self._error: str | None = None
        self._state = "starting"
        self._dead_since: float | None = None
        self._reconnecting = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()

    # -- lifetime -------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        """Start the actor's stream (generation 0), then the puller."""
        try:
            out = ray.get(self.actor.start.remote(0, 0), timeout=timeout)
        except GetTimeoutError:
            p = self.placement or CameraPlacement()
            raise ClusterError(f"camera {self.id}: not started within {timeout:.0f} s; no node may have "
                               f"room for its actor ({p.cpus} CPUs, resources {p.resources or 'none'}): "
                               "see `ray status`") from None
        except (RayTaskError, RayActorError) as e:
            raise unwrap(e, self.id) from None
        self._opened(out)
        self._thread = threading.Thread(target=self._pull_loop, name=f"uar-pull-{self.id}", daemon=True)
        self._thread.start()

    def _opened(self, out: dict) -> None:
        info = StreamInfo(**out["info"])
        self.view.open(info)
        self.feed.open(info)
        if out.get("note"):
            self.events.publish(CameraEvent(self.id, out["note"]))

    def stop(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """End the actor's stream (it finalises its files), take its last results, end the
        feed; ``interrupted``: the service was asked to stop (recorded in the summary)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._state in ("ended", "failed"):
            return
        try:
            self._apply(ray.get(self.actor.stop.remote(timeout, interrupted), timeout=timeout + 10))
        except Exception as e:  # noqa: BLE001 - a dead actor: nothing more to finalise here
            log.warning("camera %s: stop: %s", self.id, unwrap(e, self.id))
            self._finish(self.stream.summary)
        self._state = "stopped" if self._state not in ("ended", "failed") else self._state

    # -- pulling --------------------------------------------------------------------------
    def _pull_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                out = ray.get(self.actor.drain.remote(), timeout=30)
            except (RayActorError, GetTimeoutError) as e:
                self._lost(e)
                continue
            except Exception as e:  # noqa: BLE001 - a failing drain ends this camera only
                self._error, self._state = str(unwrap(e, self.id)), "failed"
                self._finish(self.stream.summary)
                return
            self._dead_since = None
            if not out["started"]:
                self._restart()
                continue
            if self._apply(out):
                return

    def _lost(self, e: BaseException) -> None:
        """The actor is dead or restarting: wait for Ray to bring it back."""
        now = time.monotonic()
        if self._dead_since is None:
            self._dead_since = now
            log.warning("camera %s: actor lost (%s); waiting for Ray to restart it", self.id,
                        type(e).__name__)
        self._state = "restarting"
        if now - self._dead_since > RESTART_GRACE_S:
            self._error = f"camera actor lost and not restarted within {RESTART_GRACE_S:.0f} s"
            self._state = "failed"
            self._stop.set()
            self._finish(self.stream.summary)

    def _restart(self) -> None:
        """A fresh actor (Ray restarted it): start the next generation where we were."""
        self.generation += 1
        self.restarts += 1
        self._base += self._next
        self._next = 0
        resume = 0 if self.config.is_live else self._base
        try:
            out = ray.get(self.actor.start.remote(self.generation, resume), timeout=120)
        except Exception as e:  # noqa: BLE001 - the restarted camera cannot open: it fails alone
            self._error, self._state = str(unwrap(e, self.id)), "failed"
            self._stop.set()
            self._finish(self.stream.summary)
            return
        log.warning("camera %s: actor restarted (generation %d), resuming at frame %d", self.id,
                    self.generation, resume)
        self._state = "starting"
        self._opened(out)

    def _apply(self, out: dict) -> bool:
        """Feed the view and the event feed; True once the stream has ended."""
        for r in out["results"]:
            self._next = max(self._next, r.frame.index + 1)
            self.view.write(r)
            self.feed.write(r)
            self._on_result(self.id, r)
            self._state = "running"
        self.where, self.batch = out["where"], out["batch"] or self.batch
        self.stream.dropped, self.stream.reconnects = out["dropped"], out["reconnects"]
        self._reconnecting = out["reconnecting"]
        if out["running"] or out["summary"] is None:
            return False
        self._error = out["error"]
        self._state = "failed" if out["error"] else "ended"
        self._finish(out["summary"])
        return True

    def _finish(self, summary: RunSummary) -> None:
        self.stream.summary = summary
        self.view.close(summary)
        self.feed.close(summary)

    # -- what the HTTP layer reads ----------------------------------------------------------
    @property
    def state(self) -> str:
        """starting, running, reconnecting, restarting (the actor died, Ray restarts it),
        ended, failed, stopped."""
        if self._state == "running" and self._reconnecting:
            return "reconnecting"
        return self._state

    @property
    def error(self) -> str | None:
        """What ended the camera abnormally (one line), None otherwise."""
        return self._error

    def status(self) -> dict:
        """The camera's line in ``GET /api/streams``: the in-process keys, plus where its
        actor runs (node_id, pid), its restarts and the batch sizes its requests saw."""
        return {**status_line(self, self.stream.dropped, self.stream.reconnects),
                "node_id": self.where.get("node_id"), "pid": self.where.get("pid"),
                "restarts": self.restarts, "batch": self.batch}

