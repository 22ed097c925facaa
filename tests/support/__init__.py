"""Shared test helpers: paths to real data, a loopback RTSP server, tiny models, engine wrappers."""
