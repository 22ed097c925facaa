"""Many cameras, one engine: ``MultiStream`` (Python), and ``uar-stream serve`` (HTTP on top)."""
from uar_stream.serve.batcher import BatchStats, CrossStreamBatcher
from uar_stream.serve.cameras import CameraConfig, ServeConfig, ServeOptions, load_serve_config
from uar_stream.serve.multistream import MultiStream
from uar_stream.serve.registry import CameraError, CameraRegistry, CameraResult

__all__ = ["BatchStats", "CameraConfig", "CameraError", "CameraRegistry", "CameraResult",
           "CrossStreamBatcher", "MultiStream", "ServeConfig", "ServeOptions", "load_serve_config"]
