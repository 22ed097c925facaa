"""Run the HTTP service: check the bind (loopback unless a token is set), bind the port
before anything heavy starts (a port in use is a one-line error at once), serve with
uvicorn, and on SIGINT/SIGTERM end the streaming answers, then finalise every camera."""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import threading
from typing import Callable

import uvicorn

from uar_stream.errors import UarError
from uar_stream.flow import RunSummary
from uar_stream.serve.cameras import ServeConfig
from uar_stream.serve.multistream import MultiStream

log = logging.getLogger("uar_stream")

#: Seconds open MJPEG/SSE answers get to end at shutdown before uvicorn cancels them.
GRACEFUL_S = 2.0


class ServeError(UarError):
    """The service cannot start (the address, the port, the token)."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None) -> None:
    """A host other than loopback needs a token (anyone on the network could watch)."""
    if not is_loopback(host) and not token:
        raise ServeError(f"--host {host} is reachable from other machines: set --token TOKEN "
                         "(or UAR_STREAM_TOKEN) so that only clients with it are served")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a one-line ServeError when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ServeError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use (another server?); choose another with "
                             "--port") from None
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          on_ready: Callable[[MultiStream, int], None] | None = None,
          streams: Callable[[ServeConfig], MultiStream] = MultiStream) -> list[tuple[str, RunSummary]]:
    """Serve until SIGINT/SIGTERM; returns each camera's (id, summary) after shutdown.
    ``streams``: what runs the cameras (default: in this process; ``--ray`` passes the
    cluster's ClusterStream, which has MultiStream's interface)."""
    from uar_stream.serve.http import create_app  # fastapi: only when serving

    check_access(host, token)
    sock = bind(host, port)
    stopping = threading.Event()
    try:
        ms = streams(config)
    except BaseException:
        sock.close()
        raise
    server: _Server | None = None
    try:
        app = create_app(ms, token, stopping)
        ucfg = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                              timeout_graceful_shutdown=GRACEFUL_S)
        server = _Server(ucfg, stopping)
        if on_ready is not None:
            on_ready(ms, sock.getsockname()[1])
        server.run(sockets=[sock])
    finally:
        stopping.set()
        cams = ms.cameras()
        ms.close(interrupted=server.signalled if server is not None else False)
        sock.close()
    return [(c.id, c.stream.summary) for c in cams]


class _Server(uvicorn.Server):
    """uvicorn's Server, but a signal only asks it to stop (uvicorn re-raises the signal
    after its shutdown, which would skip finalising the cameras) and ends the streams."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event):
        super().__init__(config)
        self.stopping = stopping
        self.signalled = False

    def handle_exit(self, sig, frame) -> None:
        """First signal: stop gracefully; a second Ctrl-C: stop waiting for connections."""
        self.stopping.set()
        if self.signalled and sig == signal.SIGINT:
            self.force_exit = True
        self.signalled = True
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self):
        """Install :meth:`handle_exit` for SIGINT/SIGTERM (main thread only); restore after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
