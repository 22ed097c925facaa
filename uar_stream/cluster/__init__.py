"""``uar-stream serve --ray``: the multi-camera service on a Ray cluster (docs/cluster.md).

One actor per camera (actor.py) near its source, the fused ensemble as a Ray Serve
deployment batched by faces (deployment.py), the driver's view of each camera for the
unchanged HTTP layer (remote.py, service.py). Ray is an optional extra: importing this
package does not import Ray; :func:`require_ray` says what to install.
"""
from __future__ import annotations

from uar_stream.cluster.options import (
    INSTALL_HINT,
    CameraPlacement,
    ClusterError,
    ClusterOptions,
    load_cluster_config,
)

__all__ = ["INSTALL_HINT", "CameraPlacement", "ClusterError", "ClusterOptions", "load_cluster_config",
           "require_ray"]


def require_ray() -> None:
    """Raise a one-line ClusterError naming the extra when Ray (with Serve) is missing."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise ClusterError(f"--ray needs Ray with Serve, which is not installed: {INSTALL_HINT}") from None
