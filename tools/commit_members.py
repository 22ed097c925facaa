r"""Commit each finished ensemble member (and, at the end, the member in progress) to git.

Runs beside a long ``uar-stream train`` so that training survives the session: whenever a
member's ``final.safetensors`` appears in the work directory, its weights, its metrics and
the run's ``config.json`` are committed at once; when the session's end time comes (or the
training process exits, or this watcher gets SIGTERM), the in-progress member's
``checkpoint.safetensors`` (atomic writes: never half a file) and the log are committed too,
so a fresh machine resumes mid-member from git by rerunning the same command.

Only the listed paths are committed (``git commit -- PATHS``), never anything else that is
staged in the shared checkout; a held ``index.lock`` is waited out and retried.

    python tools/commit_members.py --work engines/next/work --out engines/next \
        --pid 1234 --final-at 22:58 --log engines/next/work/train.log
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    """Print ``msg`` to stdout after the UTC time (HH:MM:SS)."""
    print(f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} {msg}", flush=True)


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``git -C repo ARGS``; its output is captured as text, its exit code not checked."""
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def commit(repo: Path, paths: list[Path], message: str, tries: int = 40) -> bool:
    """git add + commit only ``paths``; retries while another process holds the index lock."""
    rel = [str(p.resolve().relative_to(repo)) for p in paths if p.exists()]
    if not rel:
        return False
    for _ in range(tries):
        if (repo / ".git" / "index.lock").exists():
            time.sleep(3)
            continue
        add = git(repo, "add", "-f", "--", *rel)  # -f: work dirs may match ignore rules
        if add.returncode != 0:
            if "index.lock" in add.stderr:
                time.sleep(3)
                continue
            log(f"git add failed: {add.stderr.strip()}")
            return False
        if git(repo, "diff", "--cached", "--quiet", "--", *rel).returncode == 0:
            return False  # nothing new in these paths
        c = git(repo, "commit", "-m", message, "--", *rel)
        if c.returncode == 0:
            log(f"committed: {message}")
            return True
        if "index.lock" in c.stderr:
            time.sleep(3)
            continue
        log(f"git commit failed: {c.stderr.strip() or c.stdout.strip()}")
        return False
    log(f"gave up on the index lock: {message}")
    return False


def digest(p: Path) -> str:
    """The SHA-256 of file ``p`` (hex), or "" if there is no such file."""
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""


def alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill 0; check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _parse_args(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="the training work dir (OUT.work or --work-dir)")
    ap.add_argument("--out", required=True, help="the model directory written at the end")
    ap.add_argument("--pid", type=int, help="training process: final commit when it exits")
    ap.add_argument("--final-at", help="UTC HH:MM: commit the member in progress and stop")
    ap.add_argument("--log", help="training log to commit with the in-progress checkpoint")
    ap.add_argument("--interval", type=float, default=30.0)
    return ap.parse_args(argv)


def _deadline(final_at: str | None) -> dt.datetime | None:
    """--final-at HH:MM -> the next such UTC time (today, else tomorrow); None without it."""
    if not final_at:
        return None
    h, m = map(int, final_at.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    deadline = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if deadline < now:
        deadline += dt.timedelta(days=1)
    return deadline


def label(repo: Path, work: Path) -> str:
    """The commit messages' prefix: the model directory the work dir belongs to."""
    try:
        return str(work.resolve().parent.relative_to(repo.resolve()))
    except ValueError:
        return work.resolve().parent.name


def commit_finished(repo: Path, work: Path, done: dict[str, str]) -> None:
    """Commit each member whose final weights are new since the last call (``done``: member
    directory name -> digest of the final weights already committed)."""
    for mdir in sorted(work.glob("member_*")):
        final = mdir / "final.safetensors"
        if final.is_file() and done.get(mdir.name) != digest(final):
            paths = [final, mdir / "metrics.json", work / "config.json"]
            if commit(repo, paths, f"{label(repo, work)}: {mdir.name} trained (weights, metrics, config)"):
                done[mdir.name] = digest(final)
            elif git(repo, "diff", "--quiet", "HEAD", "--", str(final.relative_to(repo))).returncode == 0:
                done[mdir.name] = digest(final)  # already committed earlier


def commit_progress(repo: Path, work: Path, out: Path, log_file: str | None, reason: str) -> None:
    """Commit the unfinished members' checkpoints, the config and the log, plus the model
    directory in ``out`` if the whole ensemble finished."""
    paths = [work / "config.json"]
    for mdir in sorted(work.glob("member_*")):
        if not (mdir / "final.safetensors").is_file():
            paths += [mdir / "checkpoint.safetensors"]
    if log_file:
        paths.append(Path(log_file))
    if (out / "manifest.json").is_file():  # the whole ensemble finished
        paths += [out / "manifest.json", *sorted(out.glob("member_*.safetensors"))]
    commit(repo, paths, f"{label(repo, work)}: training state at {reason} (resume: rerun the same command)")


def main(argv=None) -> int:
    """Commit members as they finish, then the progress at training exit, ``--final-at`` or
    SIGTERM; returns 0, or 2 outside a git checkout."""
    a = _parse_args(argv)
    work, out = Path(a.work).resolve(), Path(a.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    top = git(work, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        print(f"commit_members: --work {work} is not inside a git checkout", file=sys.stderr)
        return 2
    repo = Path(top.stdout.strip())
    deadline = _deadline(a.final_at)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    done: dict[str, str] = {}
    log(f"watching {work} (repo {repo}); final commit at {deadline or 'training exit'}")
    while True:
        commit_finished(repo, work, done)
        ended = a.pid is not None and not alive(a.pid)
        late = deadline is not None and dt.datetime.now(dt.timezone.utc) >= deadline
        if ended or late or stop["now"]:
            time.sleep(2)  # let a checkpoint that is being renamed land
            commit_finished(repo, work, done)
            commit_progress(repo, work, out, a.log, "training exit" if ended else "session end")
            return 0
        time.sleep(a.interval)


if __name__ == "__main__":
    sys.exit(main())
