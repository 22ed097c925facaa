"""uar-stream: facial-expression analysis that tells ambiguous faces from unfamiliar ones."""
from uar_stream.config import AnalyzerConfig, load_config
from uar_stream.errors import (
    ConfigError,
    DataError,
    InputError,
    ModelError,
    SinkError,
    SourceError,
    UarError,
)
from uar_stream.flow import (
                             EnsembleOutput,
                             Event,
                             FaceResult,
                             Route,
                             RunSummary,
                             Sink,
                             StreamInfo,
                             StreamResult,
)
from uar_stream.model.uncertainty import decompose
from uar_stream.pipeline.analyzer import Analyzer
from uar_stream.pipeline.routing import Router
from uar_stream.version import __version__

__all__ = ["Analyzer", "AnalyzerConfig", "ConfigError", "DataError", "EnsembleOutput", "Event",
           "FaceResult", "InputError", "ModelError", "Route", "Router", "RunSummary", "Sink", "SinkError",
           "SourceError", "StreamInfo", "StreamResult", "UarError", "__version__", "decompose",
           "load_config"]
