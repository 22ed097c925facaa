"""Command-line values checked like config keys: one line naming the option (or the config key
it sets) and what is allowed, exit 2, before anything is opened or written."""
from __future__ import annotations

import pytest

from tests.reliability.support import check_answer, cli

SRC = "clip.mp4"  # never opened: every case fails before the source is read

CASES = [  # (case, argv after `uar-stream`, message regex)
    ("run --max-frames -5", ["run", "--max-frames", "-5"],
     r"argument --max-frames: -5 is out of range; allowed: 0 \(no limit\) or more"),
    ("run --max-frames many", ["run", "--max-frames", "many"], r"'many' is not a whole number"),
    ("run --max-frames 1.5", ["run", "--max-frames", "1.5"], r"'1\.5' is not a whole number"),
    ("run --tau-epistemic nan", ["run", "--tau-epistemic", "nan"], r"nan is not a finite number"),
    ("run --tau-epistemic 11", ["run", "--tau-epistemic", "11"],
     r"routing\.tau_epistemic: 11\.0 is out of range; allowed: 0\.0 to 10\.0"),
    ("run --tau-aleatoric -1", ["run", "--tau-aleatoric", "-1"],
     r"routing\.tau_aleatoric: -1\.0 is out of range"),
    ("run --reconnect-attempts -1", ["run", "--reconnect-attempts", "-1"],
     r"source\.reconnect_attempts: -1 is out of range; allowed: 0 to"),
    ("run --reconnect-attempts 2.5", ["run", "--reconnect-attempts", "2.5"], r"not a whole number"),
    ("run --buffer-policy bogus", ["run", "--buffer-policy", "bogus"],
     r"source\.buffer_policy: 'bogus' is not allowed; allowed: auto, wait"),
    ("run --face-events bogus", ["run", "--face-events", "bogus"], r"events\.faces: 'bogus' is not allowed"),
    ("run --detector bogus", ["run", "--detector", "bogus"], r"detector\.model: 'bogus' is not allowed"),
    ("run --backend bogus", ["run", "--backend", "bogus"], r"engine\.backend: 'bogus' is not allowed"),
    ("run --output = --events", ["run", "--output", "same.jsonl", "--events", "same.jsonl"],
     r"--events and --output name the same file"),
    ("run --summary-json = --events", ["run", "--events", "e.jsonl", "--summary-json", "./e.jsonl"],
     r"--summary-json and --events name the same file"),
    ("run --output = --source", ["run", "--output", "__SRC__"], r"--output .*: is the source; refusing"),
    ("run --events ''", ["run", "--events", " "], r"--events: an empty path is not allowed"),
    ("run unknown option", ["run", "--nope"], r"unrecognized arguments: --nope"),
    ("run without --source", ["run", "--no-source"], r"the following arguments are required: --source"),
    ("no command", [], r"the following arguments are required: cmd"),
    ("unknown command", ["nope"], r"invalid choice: 'nope'"),
    ("train --members 0", ["train", "--data", "x", "--out", "y", "--members", "0"],
     r"argument --members: 0 is out of range; allowed: 1 to 64"),
    ("train --lr 0", ["train", "--data", "x", "--out", "y", "--lr", "0"],
     r"argument --lr: 0 is out of range"),
    ("train --epochs -1", ["train", "--data", "x", "--out", "y", "--epochs", "-1"], r"argument --epochs"),
    ("build-engine --max-batch 0", ["build-engine", "--max-batch", "0"],
     r"argument --max-batch: 0 is out of range"),
    ("bench-engines --threads -1", ["bench-engines", "--threads", "-1"],
     r"argument --threads: -1 is out of range"),
    ("evaluate --limit -1", ["evaluate", "--data", "x", "--out", "y", "--limit", "-1"],
     r"argument --limit: -1 is out of range; allowed: 0 or more"),
    ("evaluate --bootstrap x", ["evaluate", "--data", "x", "--out", "y", "--bootstrap", "x"],
     r"'x' is not a whole number"),
    ("calibrate --id-reject 2", ["calibrate", "--data", "x", "--id-reject", "2"],
     r"argument --id-reject: 2 is out of range; allowed: 0 to 1"),
    ("bench-engines --budget-s inf", ["bench-engines", "--budget-s", "inf"], r"inf is not a finite number"),
]


@pytest.mark.parametrize("case,argv,message", CASES, ids=[c[0] for c in CASES])
def test_bad_option_is_one_line(tmp_path, media, case, argv, message):
    src = tmp_path / SRC
    src.write_bytes((media / "pyfeat_single_face.mp4").read_bytes())
    argv = [str(src) if a == "__SRC__" else a for a in argv]
    if argv[:1] == ["run"] and "--no-source" not in argv:
        argv = argv + ["--source", str(src)]
    argv = [a for a in argv if a != "--no-source"]
    # argparse's own errors about the command line as a whole come from the top-level parser
    cmd = "" if not argv or argv[0] == "nope" or "unrecognized" in message else argv[0]
    ans = cli(argv, cwd=tmp_path)
    check_answer(f"cli: {case}", ans, 2, message, cmd=cmd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SRC]  # nothing written
