"""PNG plots of an evaluation report (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROUTER_LABELS = {"uar": "UAR (epistemic gate)", "total_entropy": "total entropy",
                 "max_softmax": "max softmax", "ldl": "LDL entropy"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def aleatoric_vs_disagreement(aleatoric: np.ndarray, disagreement: np.ndarray, rho: dict,
                              path: Path) -> Path:
    """Hexbin of predicted aleatoric uncertainty against annotator vote entropy (nats)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    hb = ax.hexbin(disagreement, aleatoric, gridsize=28, mincnt=1, bins="log", cmap="viridis")
    fig.colorbar(hb, ax=ax, label="faces (log)")
    ax.set_xlabel("annotator disagreement: vote entropy (nats)")
    ax.set_ylabel("aleatoric uncertainty (nats)")
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    ax.set_title(f"Spearman {f(rho['value'])} (95% CI {f(rho['ci_low'])}-{f(rho['ci_high'])})",
                 fontsize=10)
    return _save(fig, path)


def _heat(ax, table: dict, severities: list[int], title: str):
    rows = list(table)
    m = np.array([[table[r][str(s)] for s in severities] for r in rows], dtype=float)
    # Diverging around chance: below 0.5 the uncertainty FALLS under corruption.
    norm = matplotlib.colors.TwoSlopeNorm(vmin=0.0, vcenter=0.5, vmax=1.0)
    im = ax.imshow(m, norm=norm, cmap="RdBu_r", aspect="auto")
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("severity")
    ax.set_title(title, fontsize=10)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                    color="white" if abs(m[i, j] - 0.5) > 0.3 else "black")
    return im


def auroc_heatmaps(epistemic: dict, aleatoric: dict, severities: list[int], path: Path) -> Path:
    """AUROC (clean vs corrupted) per corruption x severity, epistemic and aleatoric side by side."""
    h = 1.2 + 0.32 * len(epistemic)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, h), sharey=True)
    _heat(axes[0], epistemic, severities, "AUROC of epistemic (clean vs corrupted)")
    im = _heat(axes[1], aleatoric, severities, "AUROC of aleatoric (cross-sensitivity)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="AUROC (0.5 = chance; < 0.5: lower under corruption)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def retention_curves(curve: list[dict], ldl_curve: list[dict] | None, matched: float,
                     path: Path) -> Path:
    """Share of ambiguous ID faces kept vs share of OOD faces rejected, per router."""
    fig, ax = plt.subplots(figsize=(5.4, 4.2))
    rates = [row["rate"] for row in curve]
    for key in ("uar", "total_entropy", "max_softmax"):
        ax.plot(rates, [np.nan if row[key] is None else row[key] for row in curve], marker="o", ms=3,
                label=ROUTER_LABELS[key])
    if ldl_curve:
        ax.plot([r["rate"] for r in ldl_curve],
                [np.nan if r["entropy"] is None else r["entropy"] for r in ldl_curve], marker="s",
                ms=3, ls="--", label=ROUTER_LABELS["ldl"])
    ax.axvline(matched, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("OOD rejection rate (severity-5 corrupted faces rejected)")
    ax.set_ylabel("ambiguous ID faces kept")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability_diagram(confidence: list, accuracy: list, count: list, ece: float,
                        path: Path) -> Path:
    """Top-1 accuracy against confidence in 15 equal-width bins (bar width = bin)."""
    bins = len(count)
    edges = np.linspace(0, 1, bins + 1)
    acc = np.array([np.nan if a is None else a for a in accuracy], dtype=float)
    conf = np.array([np.nan if c is None else c for c in confidence], dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ok = np.array(count) > 0
    ax.bar(edges[:-1][ok], acc[ok], width=1 / bins, align="edge", edgecolor="black",
           alpha=0.75, label="accuracy")
    ax.bar(edges[:-1][ok], (conf - acc)[ok], bottom=acc[ok], width=1 / bins, align="edge",
           color="tab:red", alpha=0.35, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy (majority label)")
    ax.set_title(f"ECE {ece:.3f} (15 bins)" if ece is not None else "ECE n/a", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


GATE_LABELS = {"mutual_information": "mutual information (paper)", "density": "feature density",
               "either": "either (OR)"}


def gate_retention_curves(gates: dict, default: str, path: Path) -> Path:
    """Per gate, ambiguous clean faces kept (solid) and all clean faces rejected (dotted) against
    the OOD rejection rate (native protocol, test corruptions), with total entropy's retention."""
    fig, ax = plt.subplots(figsize=(5.8, 4.4))
    base = None
    for name, sec in gates.items():
        curve = sec["retention"]["curve"]
        rates = [row["rate"] for row in curve]
        nan = lambda v: np.nan if v is None else v  # noqa: E731
        label = GATE_LABELS.get(name, name) + (" [default]" if name == default else "")
        line, = ax.plot(rates, [nan(row["kept"]) for row in curve], marker="o", ms=3, label=label)
        ax.plot(rates, [nan(row["clean_rejection"]) for row in curve], ls=":", color=line.get_color())
        base = (rates, [nan(row["total_entropy_kept"]) for row in curve])
    if base:
        ax.plot(*base, color="grey", marker="x", ms=3, label="total entropy (one score)")
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("OOD rejection rate (severity-5 test corruptions, native protocol)")
    ax.set_ylabel("solid: ambiguous faces kept; dotted: clean faces rejected")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
