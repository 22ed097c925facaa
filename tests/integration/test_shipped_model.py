"""The shipped ensemble, through the real inference path, on a fixed PublicTest subset:
a broken model, a broken preprocessing or a broken engine cannot land."""
import numpy as np

from uar_stream.backends import create_engine
from uar_stream.labels import emotion_rows, majority_label, vote_entropy
from uar_stream.metrics import accuracy, spearman
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import read_manifest

N = 800  # the first 800 PublicTest faces FER+ keeps


def test_shipped_ensemble_on_publictest_subset(default_model, ferplus):
    d = np.load(ferplus / "publictest.npz")
    keep = np.flatnonzero(emotion_rows(d["votes"]))[:N]
    images, votes = d["images"][keep], d["votes"][keep]
    out = create_engine(default_model).infer(prepare_batch(images))
    acc = accuracy(out.mean_probs, majority_label(votes))
    rho = spearman(out.aleatoric, vote_entropy(votes))
    man = read_manifest(default_model)
    print(f"subset accuracy {acc:.4f}, Spearman(aleatoric, disagreement) {rho:.4f}")
    # Guard rails, not the reported figures (those are in the manifest, on all of PublicTest):
    assert acc >= 0.78
    assert abs(acc - man.metrics["ensemble"]["accuracy"]) < 0.04
    assert rho >= 0.45
    assert (out.epistemic >= 0).all() and np.allclose(out.mean_probs.sum(1), 1, atol=1e-4)
    # Members must really differ (an ensemble of copies has no epistemic signal).
    assert out.epistemic.mean() > 1e-3
