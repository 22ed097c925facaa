"""``ray:`` in ``CAMERAS.yaml``: what the cluster mode asks Ray for. Read only with
``uar-stream serve --ray``; the rest of the file is the plain ``serve`` config.

::

    ray:
      camera_cpus: 1            # CPUs each camera actor reserves (capture, detection, tracking)
      max_restarts: 3           # Ray restarts a dead camera actor this often
      replicas: 2               # ensemble replicas (Ray Serve deployment)
      replica_cpus: 1           # CPUs each replica reserves
      replica_gpus: 0           # GPUs each replica reserves (engine.device: cuda)
      max_batch_faces: 16       # @serve.batch fires at this many faces ...
      batch_wait_ms: 5          # ... or this long after the first request of a batch
      cameras:                  # per camera (by id): pin it where its stream is reachable
        door: {resources: {site_a: 0.01}, cpus: 2}

Every error is one line naming the key (like the other configs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uar_stream.errors import ConfigError, UarError
from uar_stream.serve.cameras import ServeConfig, check_key, check_number, load_serve_config, read_config

#: What to install when Ray is missing (the plain install does not pull it).
INSTALL_HINT = "pip install 'uar-stream[ray]'"


class ClusterError(UarError):
    """The cluster mode cannot start or lost what it needs (Ray missing, no cluster, ...)."""


@dataclass
class CameraPlacement:
    """Where one camera's actor may run: ``resources`` (custom resources, e.g. a site's
    name, that only the nodes near its source have) and its CPUs (None: ``camera_cpus``)."""

    resources: dict[str, float] = field(default_factory=dict)
    cpus: float | None = None


@dataclass
class ClusterOptions:
    """The ``ray:`` section (see the module docstring)."""

    camera_cpus: float = 1.0
    max_restarts: int = 3
    replicas: int = 1
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    max_batch_faces: int = 16
    batch_wait_ms: float = 5.0
    cameras: dict[str, CameraPlacement] = field(default_factory=dict)

    def placement(self, camera_id: str) -> CameraPlacement:
        """The camera's placement (its resources and CPUs, defaults filled in)."""
        p = self.cameras.get(camera_id, CameraPlacement())
        return CameraPlacement(dict(p.resources), self.camera_cpus if p.cpus is None else p.cpus)


_RANGES: dict[str, tuple[Any, Any]] = {
    "camera_cpus": (0.0, 1024.0), "max_restarts": (0, 1000), "replicas": (1, 256),
    "replica_cpus": (0.0, 1024.0), "replica_gpus": (0.0, 64.0), "max_batch_faces": (1, 1024),
    "batch_wait_ms": (0.0, 1000.0),
}


def _placement(cid: str, raw: Any) -> CameraPlacement:
    where = f"ray.cameras.{cid}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (resources, cpus), got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"resources", "cpus"})
    if unknown:
        check_key(where, unknown[0], ("resources", "cpus"))
    res = raw.get("resources") or {}
    if not isinstance(res, dict):
        raise ConfigError(f"{where}.resources: expected a mapping of resource name to amount")
    resources = {str(k): float(check_number(f"{where}.resources.{k}", v, 0.0, 1e9)) for k, v in res.items()}
    cpus = None if raw.get("cpus") is None else check_number(f"{where}.cpus", raw["cpus"], 0.0, 1024.0)
    return CameraPlacement(resources, cpus)


def parse_options(raw: Any, camera_ids: list[str]) -> ClusterOptions:
    """Validate a ``ray:`` mapping (None: the defaults) for a config with these cameras."""
    if raw is None:
        return ClusterOptions()
    if not isinstance(raw, dict):
        raise ConfigError(f"ray: expected a mapping, got {type(raw).__name__}")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "cameras":
            continue
        check_key("ray", key, [*_RANGES, "cameras"])
        kwargs[key] = check_number(f"ray.{key}", value, *_RANGES[key])
    cams = raw.get("cameras") or {}
    if not isinstance(cams, dict):
        raise ConfigError("ray.cameras: expected a mapping of camera id to {resources, cpus}")
    for cid in cams:
        if cid not in camera_ids:
            raise ConfigError(f"ray.cameras.{cid}: no such camera; cameras: {', '.join(camera_ids)}")
    return ClusterOptions(**kwargs, cameras={cid: _placement(cid, v) for cid, v in cams.items()})


def load_cluster_config(source: str | Path | dict) -> tuple[ServeConfig, ClusterOptions]:
    """Read a ``CAMERAS.yaml`` (path or parsed dict): the serve config and its ``ray:``
    section; raises ConfigError (one line)."""
    data = read_config(source)
    raw = data.pop("ray", None)
    config = load_serve_config(data)
    return config, parse_options(raw, [c.id for c in config.cameras])
