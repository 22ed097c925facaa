"""Every config key with a value of the wrong type and, where it has a range or choices, one
outside it: `uar-stream run --config bad.yaml` exits 2 with one line naming the key and what is
allowed, before any output exists. The table is generated from the config dataclasses, so a
new key is covered the day it is added."""
from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from uar_stream.config import AnalyzerConfig

from tests.reliability.support import check_answer, cli


def _fields():
    for sec in dataclasses.fields(AnalyzerConfig):
        cls = typing.get_type_hints(AnalyzerConfig)[sec.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield sec.name, f, typing.get_origin(hints[f.name]) or hints[f.name]


def _cases():
    """(id, section, key, bad value, what the message must say)."""
    for sec, f, t in _fields():
        key, meta = f"{sec}.{f.name}", f.metadata
        if t is bool:
            yield f"{key}=wrong type", sec, f.name, "yes", "allowed: true, false"
        elif t in (int, float):
            yield f"{key}=wrong type", sec, f.name, "many", "is not a number"
            if meta.get("hi") is not None:
                yield f"{key}=above range", sec, f.name, meta["hi"] * 2 + 1, "out of range; allowed:"
            if meta.get("lo") is not None:
                yield f"{key}=below range", sec, f.name, meta["lo"] - 1, "out of range; allowed:"
            if t is int:
                yield f"{key}=fraction", sec, f.name, 1.5, "whole number"
            else:  # NaN compares false with any bound: it must be refused by name
                yield f"{key}=NaN", sec, f.name, float("nan"), "is not a finite number"
        elif t is str and meta.get("choices"):
            yield f"{key}=wrong type", sec, f.name, [1], "is not a string"
            yield f"{key}=not a choice", sec, f.name, "bogus", "is not allowed; allowed: "
        elif t is str:
            yield f"{key}=wrong type", sec, f.name, {"a": 1}, "is not a string"
        elif t is list:
            yield f"{key}=wrong type", sec, f.name, "red", r"allowed: \[B, G, R\]"
            yield f"{key}=above range", sec, f.name, [0, 0, 256], r"allowed: \[B, G, R\]"


CASES = list(_cases())
STRUCTURE = [  # (id, YAML text, message)
    ("config: unknown key", "routing:\n  tau: 1\n", r"routing\.tau: unknown key; allowed keys:"),
    ("config: unknown section", "nope:\n  a: 1\n", r"nope: unknown key; allowed keys: model,"),
    ("config: section not a mapping", "source: 3\n", r"source: expected a mapping"),
    ("config: top level a list", "- 1\n- 2\n", r"top level must be a mapping"),
    ("config: not YAML", "source: [\n", r"not valid YAML"),
]


def test_every_key_is_covered():
    keys = {f"{s}.{f.name}" for s, f, _ in _fields()}
    assert {c[0].split("=")[0] for c in CASES} == keys and len(CASES) >= 60


@pytest.mark.parametrize("case,section,key,value,message", CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_naming_the_key(tmp_path, case, section, key, value, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({section: {key: value}}))
    ans = cli(["run", "--config", str(cfg), "--source", "x.mp4", "--events", str(tmp_path / "e.jsonl")])
    check_answer(case, ans, 2, rf"error: {section}\.{key}: .*{message}")
    assert not (tmp_path / "e.jsonl").exists()


@pytest.mark.parametrize("case,text,message", STRUCTURE, ids=[c[0] for c in STRUCTURE])
def test_bad_config_file_is_one_line(tmp_path, case, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    check_answer(case, cli(["run", "--config", str(cfg), "--source", "x.mp4"]), 2, message)


def test_missing_config_file(tmp_path):
    ans = cli(["run", "--config", str(tmp_path / "none.yaml"), "--source", "x.mp4"])
    check_answer("config: file missing", ans, 2, "config file not found")
