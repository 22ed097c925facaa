"""CAMERAS.yaml validation and the one-line start-up errors of `uar-stream serve`."""
import logging
import socket

import pytest
import yaml

from uar_stream.cli.main import main
from uar_stream.errors import ConfigError
from uar_stream.serve import load_serve_config
from uar_stream.serve.server import check_access, is_loopback

CLIP = "pyfeat_single_face.mp4"


def _cams(media, *extra, **top):
    return {**top, "cameras": [{"id": "a", "source": str(media / CLIP)}, *extra]}


def test_a_valid_config_gives_each_camera_its_own_analyzer_config(media):
    cfg = load_serve_config(_cams(media, {"id": "b", "source": "rtsp://u:p@127.0.0.1:9/x", "enabled": False,
                                          "analyzer": {"routing": {"tau_epistemic": 0.5}}},
                                  routing={"tau_epistemic": 0.2}, serve={"max_batch": 4}))
    assert [c.id for c in cfg.cameras] == ["a", "b"] and cfg.serve.max_batch == 4
    assert cfg.analyzer_config(cfg.cameras[0]).routing.tau_epistemic == 0.2
    assert cfg.analyzer_config(cfg.cameras[1]).routing.tau_epistemic == 0.5
    assert cfg.cameras[1].is_live and not cfg.cameras[1].enabled


@pytest.mark.parametrize("bad, message", [
    ({"id": "a", "source": "x.mp4"}, "cameras: duplicate id 'a'"),
    ({"id": "b", "source": "missing.mp4"}, "cameras[1] (id b): source: file not found: missing.mp4"),
    ({"id": "b", "source": "rtsp://h/x", "colour": 1}, "cameras[1] (id b): colour: unknown key"),
    ({"id": "b", "source": "rtsp://h/x", "analyzer": {"engine": {"backend": "torch"}}},
     "cameras[1] (id b): analyzer.engine: cannot be set per camera"),
    ({"id": "b", "source": "rtsp://h/x", "analyzer": {"tracker": {}}},
     "cameras[1] (id b): analyzer.tracker: unknown section; allowed: "),
    ({"id": "b", "source": "rtsp://h/x", "analyzer": {"routing": {"tau_epistemic": -1}}},
     "cameras[1] (id b): routing.tau_epistemic: -1.0 is out of range"),
    ({"id": "b/c", "source": "rtsp://h/x"}, "cameras[1] (id b/c): id: 'b/c' is not allowed"),
    ({"id": "b", "source": "rtsp://h/x", "loop": "yes"}, "cameras[1] (id b): loop: 'yes' is not allowed"),
])
def test_bad_cameras_are_one_line_errors_naming_the_camera(media, bad, message):
    if bad["source"] == "x.mp4":
        bad = {**bad, "source": str(media / CLIP)}
    with pytest.raises(ConfigError) as e:
        load_serve_config(_cams(media, bad))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_bad_top_level_keys_name_the_key(media):
    with pytest.raises(ConfigError, match=r"^serve.max_batch: 0 is not allowed; allowed: 1 to 1024"):
        load_serve_config(_cams(media, serve={"max_batch": 0}))
    with pytest.raises(ConfigError, match=r"^routin: unknown key"):
        load_serve_config(_cams(media, routin={}))
    with pytest.raises(ConfigError, match=r"^cameras: expected a list"):
        load_serve_config({"cameras": {}})


def test_the_plain_server_ignores_the_ray_section_and_names_other_unknown_keys(media, tmp_path, caplog):
    ray = {"replicas": 2, "cameras": {"a": {"resources": {"site_a": 1}}}}
    with caplog.at_level(logging.DEBUG, logger="uar_stream.serve"):
        cfg = load_serve_config(_cams(media, ray=ray, serve={"max_batch": 4}))
    assert [c.id for c in cfg.cameras] == ["a"] and cfg.serve.max_batch == 4 and "ray" not in cfg.base
    assert "ray: ignored" in caplog.text
    path = tmp_path / "cams.yaml"  # from a file, as `serve --config` reads it
    path.write_text(yaml.safe_dump(_cams(media, ray=ray)))
    assert [c.id for c in load_serve_config(path).cameras] == ["a"]
    with pytest.raises(ConfigError) as e:
        load_serve_config(_cams(media, rays={"replicas": 2}))
    assert str(e.value).startswith("rays: unknown key; allowed keys: model, ")
    assert str(e.value).endswith(", serve, cameras, ray") and "\n" not in str(e.value)


def test_cli_serve_accepts_a_config_with_a_ray_section(tmp_path, media, capsys):
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(_cams(media, ray={"replicas": 2})))
    with socket.socket() as busy:  # the config is read before the port: a busy one ends it there
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = _cli_error(capsys, ["serve", "--config", str(path), "--port", str(port)])
    assert line.startswith(f"uar-stream serve: error: port {port} on 127.0.0.1 is in use")


def test_loopback_needs_no_token_any_other_host_does():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    check_access("127.0.0.1", None)
    check_access("0.0.0.0", "s3cret")


def _cli_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_one_line_errors(tmp_path, media, capsys):
    good = tmp_path / "cams.yaml"
    good.write_text(f"cameras:\n  - {{id: a, source: {media / CLIP}}}\n")
    line = _cli_error(capsys, ["serve", "--config", str(good), "--host", "0.0.0.0"])
    assert line.startswith("uar-stream serve: error: --host 0.0.0.0 is reachable from other machines: "
                           "set --token")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - {id: a, source: nowhere.mp4}\n")
    assert _cli_error(capsys, ["serve", "--config", str(bad)]) == (
        "uar-stream serve: error: cameras[0] (id a): source: file not found: nowhere.mp4")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = _cli_error(capsys, ["serve", "--config", str(good), "--port", str(port)])
    assert line == (f"uar-stream serve: error: port {port} on 127.0.0.1 is in use (another server?); "
                    "choose another with --port")


def test_the_example_cameras_file_is_valid(media, monkeypatch):
    from tests.support.paths import ROOT

    monkeypatch.chdir(ROOT)  # its clip path is relative to the checkout
    cfg = load_serve_config(ROOT / "examples" / "cameras.yaml")
    assert [c.id for c in cfg.cameras] == ["entrance", "webcam", "demo"]
    assert [c.enabled for c in cfg.cameras] == [False, False, True]
    assert cfg.analyzer_config(cfg.cameras[0]).source.reconnect_attempts == 1000
