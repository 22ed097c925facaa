"""uar-stream: facial-expression analysis that tells ambiguous faces from unfamiliar ones."""
from .analyzer import Analyzer
from .config import AnalyzerConfig, load_config
from .engines.base import EnsembleOutput
from .errors import ConfigError, DataError, ModelError, SinkError, SourceError, UarError
from .results import FaceResult
from .routing import Route, Router, SingleUncertaintyRouter
from .uncertainty import decompose

__all__ = ["Analyzer", "AnalyzerConfig", "ConfigError", "DataError", "EnsembleOutput",
           "FaceResult", "ModelError", "Route", "Router", "SingleUncertaintyRouter",
           "SinkError", "SourceError", "UarError", "decompose", "load_config"]
__version__ = "0.1.0"
