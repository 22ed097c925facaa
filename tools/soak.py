"""Soak test: `uar-stream run` on an RTSP stream whose server is killed and restarted at random.

    python tools/soak.py --minutes 30 [--clip lp_driving_d18.mp4] [--model engines/default]
                         [--kill-every 45 150] [--down 1 8] [--out DIR] [--json soak.json]

Serves a shared clip over RTSP on 127.0.0.1 (tests/support/live.RtspServer, looping), runs the
real CLI on it (credentials in the URL, so redaction is checked too), and while it runs kills the
server at random intervals (uniform in --kill-every seconds) for a random downtime (--down).
Every --sample-s seconds it samples the analyzer process's RSS (VmRSS) and open file
descriptors (/proc/PID/fd). At the end it stops the run with SIGINT and prints:

- RSS at the end of warm-up, at the end, the maximum, growth in % after warm-up, and the
  slope (MiB/hour, least squares over the samples after warm-up);
- open fds after warm-up: min / max / last (flat means no leak);
- server kills, reconnects in the summary, stream_lost / stream_restored pairs (every kill
  should give one lost followed by one restored);
- whether every events file (with rotation: every rotated file too) parses line by line,
  ends with run_ended, and never contains the URL's password.

Not run in CI (it takes as long as you ask); its figures are quoted in docs/threats.md.
Timings live here, in tools/, not in the tests.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the tests.support package
MEDIA = ROOT.parent / "shared" / "media"
PASSWORD = "s3cr@t/pw"  # raw '@' and '/' in a password: the cases redaction once missed
USERINFO = "admin:s3cr%40t%2Fpw"  # percent-encoded in the URL, as a camera config would have it


def rss_and_fds(pid: int) -> tuple[float, int] | None:
    """(RSS in MiB, open fds) of a live process, or None when it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kb / 1024.0, fds


def read_events(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """Every record of the events files in order, and the problems found (unparsable lines)."""
    records, problems = [], []
    for p in paths:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    problems.append(f"{p.name}:{n} does not parse")
    return records, problems


def events_files(path: Path) -> list[Path]:
    """The rotated events files (STEM.NNNN.jsonl[.gz]), oldest first, then the live one."""
    rotated = []
    for p in path.parent.glob(f"{path.stem}.*{path.suffix}*"):
        num = p.name[len(path.stem) + 1:].split(".")[0]
        if num.isdigit():
            rotated.append((int(num), p))
    return [p for _, p in sorted(rotated)] + ([path] if path.exists() else [])


def pairs(kinds: list[str]) -> tuple[int, int, bool]:
    """(lost, restored, every lost followed by its restored before the next loss)."""
    lost = restored = 0
    ok, open_loss = True, False
    for k in kinds:
        if k == "stream_lost":
            ok &= not open_loss
            open_loss, lost = True, lost + 1
        elif k == "stream_restored":
            ok &= open_loss
            open_loss, restored = False, restored + 1
    return lost, restored, ok


def growth(samples: list[tuple[float, float, int]], warmup_s: float) -> dict:
    """RSS and fd figures over the samples taken after warm-up."""
    after = [s for s in samples if s[0] >= warmup_s] or samples[-1:]
    t = np.array([s[0] for s in after])
    rss = np.array([s[1] for s in after])
    fds = [s[2] for s in after]
    slope = float(np.polyfit(t / 3600.0, rss, 1)[0]) if len(after) >= 3 else 0.0
    return {"rss_mib_after_warmup": round(float(rss[0]), 1), "rss_mib_end": round(float(rss[-1]), 1),
            "rss_mib_max": round(float(rss.max()), 1),
            "rss_growth_pct": round(100.0 * (rss[-1] - rss[0]) / rss[0], 2),
            "rss_slope_mib_per_hour": round(slope, 2),
            "fds_min": min(fds), "fds_max": max(fds), "fds_end": fds[-1],
            "samples_after_warmup": len(after)}


def write_config(path: Path, model: str, max_mb: float) -> None:
    """A config for a camera that may vanish: unlimited reconnects, short timeouts."""
    lines = [f"model:\n  path: {model}",
             "source:\n  reconnect_attempts: 1000000\n  backoff_initial_s: 0.5\n"
             "  backoff_max_s: 2.0\n  read_timeout_s: 3.0\n  open_timeout_s: 3.0"]
    if max_mb:
        lines.append(f"events:\n  max_mb: {max_mb}\n  keep: 1000\n  compress: true")
    path.write_text("\n".join(lines) + "\n")


def chaos(srv, proc, args, t0, log) -> tuple[list, int]:
    """Kill and restart the server at random until the time is up; sample RSS/fds meanwhile."""
    rng = random.Random(args.seed)
    samples: list[tuple[float, float, int]] = []
    kills = 0
    end = t0 + args.minutes * 60.0
    next_kill = time.monotonic() + rng.uniform(*args.kill_every)
    next_sample = time.monotonic()
    while time.monotonic() < end and proc.poll() is None:
        now = time.monotonic()
        if now >= next_sample:
            got = rss_and_fds(proc.pid)
            if got is not None:
                samples.append((now - t0, got[0], got[1]))
            next_sample = now + args.sample_s
        if now >= next_kill and now + args.down[1] + 20 < end:
            srv.kill()
            kills += 1
            down = rng.uniform(*args.down)
            log(f"[{now - t0:7.1f} s] kill {kills}: server down for {down:.1f} s")
            time.sleep(down)
            srv.start()
            next_kill = time.monotonic() + rng.uniform(*args.kill_every)
        time.sleep(0.5)
    return samples, kills


def soak(args) -> dict:
    """Run the soak; return its figures."""
    from tests.support.live import RtspServer

    out = Path(args.out or tempfile.mkdtemp(prefix="uar-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    cfg, ev_path = out / "soak.yaml", out / "events.jsonl"
    write_config(cfg, args.model, args.max_mb)
    clip = MEDIA / args.clip

    def log(msg: str) -> None:
        print(msg, flush=True)

    with RtspServer(out / "srv", [clip]) as srv:
        url = srv.url(clip.name, userinfo=USERINFO)
        cmd = [sys.executable, "-m", "uar_stream.cli.main", "run", "--config", str(cfg),
               "--source", url, "--events", str(ev_path), "--no-progress",
               "--face-events", args.face_events,
               "--summary-json", str(out / "summary.json")]
        t0 = time.monotonic()
        with open(out / "stdout.txt", "w") as so, open(out / "stderr.txt", "w") as se:
            proc = subprocess.Popen(cmd, stdout=so, stderr=se, cwd=out)
            try:
                samples, kills = chaos(srv, proc, args, t0, log)
                early = proc.poll()
                proc.send_signal(signal.SIGINT)
                rc = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
    files = events_files(ev_path)
    records, problems = read_events(files)
    kinds = [r.get("event") for r in records]
    lost, restored, paired = pairs(kinds)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    texts = (out / "stderr.txt").read_text() + (out / "stdout.txt").read_text()
    leaked = any(s in texts for s in ("s3cr", PASSWORD)) or any(
        "s3cr" in json.dumps(r) for r in records)
    report = {"minutes": args.minutes, "clip": clip.name, "exit_code": rc,
              "ended_early": early is not None, "server_kills": kills,
              "reconnects": summary.get("reconnects"), "frames": summary.get("frames"),
              "stream_lost": lost, "stream_restored": restored, "lost_restored_paired": paired,
              "events_files": len(files), "events_records": len(records),
              "events_parse": not problems, "events_problems": problems[:5],
              "last_event": kinds[-1] if kinds else None, "password_leaked": leaked,
              **growth(samples, args.warmup_s), "out": str(out)}
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the soak, print (and optionally write) the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--clip", default="lp_driving_d18.mp4")
    p.add_argument("--model", default=str(ROOT / "engines" / "default"))
    p.add_argument("--kill-every", type=float, nargs=2, default=(45.0, 150.0), metavar=("MIN", "MAX"))
    p.add_argument("--down", type=float, nargs=2, default=(1.0, 8.0), metavar=("MIN", "MAX"))
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--warmup-s", type=float, default=120.0)
    p.add_argument("--max-mb", type=float, default=2.0, help="events.max_mb (0: no rotation)")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--face-events", default="every_frame",
                   help="events.faces (every_frame: the most writing, so rotation runs)")
    p.add_argument("--out", help="folder for the events, config, stdout/stderr (default: a temp dir)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    report = soak(args)
    for k, v in report.items():
        print(f"{k:>26}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    ok = (report["events_parse"] and report["lost_restored_paired"] and not report["password_leaked"]
          and report["stream_restored"] >= report["server_kills"] and report["exit_code"] == 130)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
