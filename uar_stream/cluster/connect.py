"""The Ray side of the service: connect (``auto``, ``local`` or an address), deploy the
ensemble application, place camera actors, tidy up. The only module that talks to Ray's
cluster APIs (the actor and the deployment run inside Ray)."""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import ray
from ray import serve

from uar_stream.cluster.actor import CameraActor
from uar_stream.cluster.deployment import APP_NAME, SERVE_LOGGING, build_app
from uar_stream.cluster.options import ClusterError, ClusterOptions
from uar_stream.config import AnalyzerConfig
from uar_stream.serve.cameras import CameraConfig

log = logging.getLogger("uar_stream.cluster")

#: The namespace of the service's actors and Serve application.
NAMESPACE = "uar-stream"


def _absolute(path: str | None) -> str | None:
    """Relative paths are the driver's (its working directory); actors run elsewhere."""
    return None if path is None else str(Path(path).expanduser().resolve())


def local_paths(camera: CameraConfig) -> CameraConfig:
    """The camera with its file source and outputs as absolute paths (a URL stays as is)."""
    source = camera.source if camera.is_live else _absolute(camera.source)
    return dataclasses.replace(camera, source=source, record=_absolute(camera.record),
                               events=_absolute(camera.events))


def model_path(path: str) -> str:
    """The model directory: absolute when it exists here, else as given (the replica's
    node resolves it, e.g. the shipped model of its own install)."""
    p = Path(path).expanduser()
    return str(p.resolve()) if p.is_dir() else str(path)


def is_loopback_address(address: str) -> bool:
    """True for ``127.x.x.x:PORT`` / ``localhost:PORT`` (optionally ``ray://``)."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return host == "localhost" or host.startswith("127.")


class Connection:
    """A connection to a Ray cluster (see the module docstring); ``close()`` removes what
    this service deployed and, for ``local``, stops the cluster it started."""

    def __init__(self, address: str = "auto", cpus_needed: float = 0.0):
        self.address = address
        self.owned = not ray.is_initialized()
        self.deployed = False
        if not self.owned:
            return
        kwargs = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": logging.WARNING}
        if is_loopback_address(address):
            # A driver of a cluster on loopback is on that node: keep its own ports there too
            # (Ray would otherwise pick the host's routable address for them).
            kwargs["_node_ip_address"] = "127.0.0.1"
        try:
            if address == "local":
                # Trying it out on one machine: as many CPU slots as the config reserves, at
                # least the cores (Ray's CPUs are scheduling slots; a laptop may oversubscribe).
                cpus = max(os.cpu_count() or 1, math.ceil(cpus_needed))
                ray.init(include_dashboard=False, num_cpus=cpus, **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ClusterError(f"--ray {address}: cannot connect to a Ray cluster "
                               f"({str(e).strip().splitlines()[0]})") from None

    def deploy(self, base: AnalyzerConfig, options: ClusterOptions) -> None:
        """Start Serve (handles only, no HTTP proxy) and run the ensemble application."""
        e = base.engine
        engine = {"backend": e.backend, "device": e.device, "precision": e.precision,
                  "max_batch": e.max_batch, "threads": e.threads, "flip_tta": e.flip_tta}
        # No HTTP proxy (the service's own HTTP layer is the driver's); no per-request log lines.
        serve.start(proxy_location="Disabled", logging_config=SERVE_LOGGING)
        app = build_app(model_path(base.model.path), engine, options.replicas, options.replica_cpus,
                        options.replica_gpus, options.max_batch_faces, options.batch_wait_ms)
        self.deployed = True
        serve.run(app, name=APP_NAME, route_prefix=None)

    @staticmethod
    def cpus_needed(options: ClusterOptions, camera_ids: list[str]) -> float:
        """The CPUs the config reserves: every camera actor and every replica."""
        return (sum(options.placement(c).cpus or 0.0 for c in camera_ids)
                + options.replicas * options.replica_cpus)

    def camera_actor(self, camera: CameraConfig, analyzer: dict, options: ClusterOptions):
        """Place the camera's actor (its CPUs and custom resources, ``max_restarts``)."""
        p = options.placement(camera.id)
        analyzer = {**analyzer, "model": {**analyzer["model"], "path": model_path(analyzer["model"]["path"])}}
        # max_concurrency: the driver's drain and stop may overlap a start.
        cls = ray.remote(CameraActor).options(
            num_cpus=p.cpus, resources=p.resources or None, max_restarts=options.max_restarts,
            max_task_retries=0, max_concurrency=4)
        return cls.remote(local_paths(camera), analyzer, APP_NAME, options.max_batch_faces)

    def kill(self, actor) -> None:
        """End an actor for good (no restart)."""
        try:
            ray.kill(actor, no_restart=True)
        except Exception as e:  # noqa: BLE001 - already gone
            log.debug("kill: %s", e)

    def close(self) -> None:
        """Delete the ensemble application; disconnect (a ``local`` cluster stops with it)."""
        try:
            if self.deployed:
                serve.delete(APP_NAME)
                if not serve.status().applications:
                    serve.shutdown()
        except Exception as e:  # noqa: BLE001 - the cluster may be gone already
            log.warning("removing the Serve application: %s", str(e).splitlines()[0])
        if self.owned and ray.is_initialized():
            ray.shutdown()
