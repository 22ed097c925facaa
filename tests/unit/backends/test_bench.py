"""Engine benchmark: the looped members compute exactly what the fused graph computes, and
the report has a row per (backend, mode, batch) plus the fused/looped ratio."""
import numpy as np

from uar_stream.backends.bench import LoopedEngine, format_table, random_model, run_bench, split_graph
from uar_stream.backends.torch_backend import TorchEngine


def test_looped_members_equal_the_fused_graph():
    m = random_model(3, seed=1)
    fused = TorchEngine(m.graph, 3, 8)
    looped = LoopedEngine([TorchEngine(g, 1, 8) for g in split_graph(m.graph)])
    x = np.random.default_rng(0).standard_normal((6, 1, 48, 48)).astype(np.float32)
    a, b = fused.infer(x), looped.infer(x)
    for name in ("mean_probs", "total", "aleatoric", "epistemic", "member_probs"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5, err_msg=name)
    assert a.epistemic.max() > 1e-4  # random members disagree: the comparison is not vacuous


def test_bench_report_rows_and_speedups():
    report = run_bench([random_model(2)], batches=(1, 4), backends=["onnxruntime"], budget_s=0.02)
    rows = report["rows"]
    assert {(r["mode"], r["batch"]) for r in rows} == {("fused", 1), ("fused", 4), ("looped", 1),
                                                        ("looped", 4)}
    for r in rows:
        assert r["latency_ms_p95"] >= r["latency_ms_median"] > 0
        assert abs(r["faces_per_s"] - r["batch"] / r["latency_ms_median"] * 1e3) < 0.1 * r["faces_per_s"]
    assert [s["batch"] for s in report["fused_speedup"]] == [1, 4]
    assert report["environment"]["cpu_gemm_gflops"] > 0
    for r, s in zip([r for r in rows if r["mode"] == "looped"], report["fused_speedup"], strict=True):
        assert r["gflops_per_s"] > 0
        assert abs(s["bound_fused_over_looped"] * s["looped_gemm_fraction"] - 1) < 0.05
    assert "tensorrt" in report["skipped"] or "tensorrt" not in {r["backend"] for r in rows}
    assert "fused vs looped" in format_table(report)


def test_flops_per_face_matches_the_hand_count_and_fusion_adds_none():
    from uar_stream.backends.bench import flops_per_face

    # The shipped arch by hand: stem 1->32 at 48^2, then per stage a stride-2 block
    # (3x3 conv, 3x3 conv, 1x1 skip) at 24^2, 12^2, 6^2, and the 192->8 head.
    macs = 1 * 32 * 9 * 48 ** 2
    for cin, cout, side in ((32, 48, 24), (48, 96, 12), (96, 192, 6)):
        macs += (cin * cout * 9 + cout * cout * 9 + cin * cout) * side ** 2
    macs += 192 * 8
    one = flops_per_face(random_model(1))
    assert abs(one - 2 * macs) / (2 * macs) < 0.01
    assert abs(flops_per_face(random_model(3)) - 3 * one) / (3 * one) < 1e-6
