"""uar-stream: facial-expression analysis that tells ambiguous faces from unfamiliar ones."""
from uar_stream.pipeline.analyzer import Analyzer
from uar_stream.config import AnalyzerConfig, load_config
from uar_stream.backends.base import EnsembleOutput
from uar_stream.errors import ConfigError, DataError, ModelError, SinkError, SourceError, UarError
from uar_stream.flow import FaceResult
from uar_stream.pipeline.routing import Route, Router, SingleUncertaintyRouter
from uar_stream.model.uncertainty import decompose

__all__ = ["Analyzer", "AnalyzerConfig", "ConfigError", "DataError", "EnsembleOutput",
           "FaceResult", "ModelError", "Route", "Router", "SingleUncertaintyRouter",
           "SinkError", "SourceError", "UarError", "decompose", "load_config"]
__version__ = "0.1.0"
