"""Engine benchmark: the looped members compute exactly what the fused graph computes, and
the report has a row per (backend, mode, batch) plus the fused/looped ratio."""
import numpy as np

from uar_stream.engines.bench import LoopedEngine, format_table, random_model, run_bench, split_graph
from uar_stream.engines.torch_backend import TorchEngine


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
    assert {(r["mode"], r["batch"]) for r in rows} == {("fused", 1), ("fused", 4), ("looped", 1), ("looped", 4)}
    for r in rows:
        assert r["latency_ms_p95"] >= r["latency_ms_median"] > 0
        assert abs(r["faces_per_s"] - r["batch"] / r["latency_ms_median"] * 1e3) < 0.1 * r["faces_per_s"]
    assert [s["batch"] for s in report["fused_speedup"]] == [1, 4]
    assert "tensorrt" in report["skipped"] or "tensorrt" not in {r["backend"] for r in rows}
    assert "fused vs looped" in format_table(report)
