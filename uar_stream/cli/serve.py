"""`uar-stream serve`: many cameras, one engine, a live view in the browser (docs/serve.md)."""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("uar_stream")


def register(sub) -> dict:
    """Add ``serve`` to ``sub``; return {name: handler(args) -> exit code}."""
    p = sub.add_parser("serve", help="analyse several cameras with one engine; HTTP API and dashboard")
    p.add_argument("--config", required=True,
                   help="CAMERAS.yaml: the analyzer config plus cameras: [{id, source, record, events, "
                        "enabled}] (docs/serve.md)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs --token)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any free port)")
    p.add_argument("--token", default=None,
                   help="require this token (Authorization: Bearer TOKEN or ?token=TOKEN); "
                        "default: the UAR_STREAM_TOKEN environment variable")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the cameras and the engine on a Ray cluster: auto (a running cluster), "
                        "local (start one here) or a Ray address; needs the [ray] extra "
                        "(docs/cluster.md). Without it, everything runs in this process")
    return {"serve": _cmd_serve}


def _cmd_serve(a) -> int:
    from uar_stream.pipeline.sinks.summary import summary_text
    from uar_stream.serve.cameras import load_serve_config
    from uar_stream.serve.server import check_access, serve

    token = a.token or os.environ.get("UAR_STREAM_TOKEN") or None
    check_access(a.host, token)  # before loading anything
    streams = {}
    if a.ray is None:
        cfg = load_serve_config(a.config)
    else:  # the cluster mode: only this branch imports uar_stream.cluster (and Ray)
        cfg, streams["streams"] = _cluster(a.config, a.ray)

    def ready(ms, port: int) -> None:
        host = f"[{a.host}]" if ":" in a.host else a.host
        print(f"uar-stream serve: {len(ms.cameras())} cameras, dashboard at http://{host}:{port}/",
              file=sys.stderr, flush=True)

    summaries = serve(cfg, a.host, a.port, token, on_ready=ready, **streams)
    for cid, s in summaries:
        print(f"[{cid}] " + summary_text(s).replace("\n", f"\n[{cid}] "))
    return 0


def _cluster(path: str, address: str):
    """(serve config, a factory of the ClusterStream) for ``--ray ADDRESS``."""
    from uar_stream.cluster import load_cluster_config, require_ray

    require_ray()
    from uar_stream.cluster.service import ClusterStream

    cfg, options = load_cluster_config(path)
    return cfg, lambda config: ClusterStream(config, options, address)
