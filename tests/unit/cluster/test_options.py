"""The ``ray:`` section of CAMERAS.yaml, segment names, resuming a file, and the one-line
error without Ray (no cluster is started here)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from uar_stream.cluster.actor import ResumeSource, resume_opener, segment_path
from uar_stream.cluster.options import ClusterOptions, load_cluster_config, parse_options
from uar_stream.config import SourceConfig
from uar_stream.errors import ConfigError
from uar_stream.pipeline.sources import open_source
from uar_stream.serve.sources import PacedLoopSource

from tests.support.paths import MEDIA, need


def test_defaults_and_per_camera_placement():
    o = parse_options({"replicas": 2, "camera_cpus": 0.5,
                       "cameras": {"door": {"resources": {"site_a": 1}, "cpus": 2}}}, ["door", "hall"])
    assert o.replicas == 2 and o.max_batch_faces == ClusterOptions().max_batch_faces
    door, hall = o.placement("door"), o.placement("hall")
    assert (door.resources, door.cpus) == ({"site_a": 1.0}, 2)
    assert (hall.resources, hall.cpus) == ({}, 0.5)


@pytest.mark.parametrize("raw, message", [
    ({"replica": 2}, "ray.replica: unknown key; allowed keys: camera_cpus"),
    ({"replicas": 0}, "ray.replicas: 0 is not allowed; allowed: 1 to 256"),
    ({"max_restarts": 1.5}, "ray.max_restarts: 1.5 must be a whole number"),
    ({"cameras": {"lobby": {}}}, "ray.cameras.lobby: no such camera; cameras: door"),
    ({"cameras": {"door": {"resource": {}}}}, "ray.cameras.door.resource: unknown key"),
    ({"cameras": {"door": {"resources": {"site_a": -1}}}}, "ray.cameras.door.resources.site_a: -1 is not"),
])
def test_bad_values_are_one_line_errors_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as e:
        parse_options(raw, ["door"])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_ray_section_is_read_beside_the_serve_config(tmp_path):
    clip = need(MEDIA / "lp_driving_d18.mp4")
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({"cameras": [{"id": "door", "source": str(clip)}],
                                    "ray": {"replicas": 3}}))
    config, options = load_cluster_config(path)
    assert [c.id for c in config.cameras] == ["door"] and options.replicas == 3


def test_restarted_generations_write_their_own_segments():
    assert segment_path("out/door.jsonl", 0) == "out/door.jsonl"
    assert segment_path("out/door.jsonl", 2) == "out/door.restart2.jsonl"
    assert segment_path(None, 1) is None


def test_a_resumed_file_starts_where_it_stopped_and_a_reconnect_reopens_plainly():
    clip = str(need(MEDIA / "lp_driving_d18.mp4"))
    cfg = SourceConfig()
    opener = resume_opener(None, 200)
    src = opener(clip, cfg)
    assert isinstance(src, ResumeSource) and src.frame_count == 16
    assert sum(1 for _ in iter(src.read, None)) == 16
    src.close()
    again = opener(clip, cfg)  # a second open (a reconnect) is not skipped again
    assert again.frame_count == open_source(clip, cfg).frame_count
    again.close()


def test_a_paced_file_skips_without_waiting_for_its_frame_rate():
    import time

    clip = str(need(MEDIA / "lp_driving_d18.mp4"))
    t0 = time.perf_counter()
    src = ResumeSource(PacedLoopSource(clip, SourceConfig(), loop=False, realtime=True), 150)
    assert time.perf_counter() - t0 < 150 / 30 / 2  # paced, 150 frames take 5 s
    assert src.frame_count == 66 and src.read() is not None
    src.close()


def test_without_ray_serve_ray_is_a_one_line_error_naming_the_extra(tmp_path):
    clip = need(MEDIA / "lp_driving_d18.mp4")
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({"cameras": [{"id": "door", "source": str(clip)}]}))
    code = ("import sys; sys.modules['ray'] = None; from uar_stream.cli.main import main; "
            f"sys.exit(main(['serve', '--config', {str(path)!r}, '--ray', 'local']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("uar-stream serve: error: --ray needs Ray with Serve, which is not "
                                "installed: pip install 'uar-stream[ray]'")
