"""The evaluation report: one self-contained HTML page to judge a model by looking.

Binary: metrics vs baseline, ROC and precision-recall curves with the operating point, score
histograms per class with the threshold, precision/recall/FPR against the threshold, a
calibration curve, the confusion matrix. Multiclass: per-class table, confusion matrix,
probability histograms and calibration per class. Regression: predicted vs true, residual
histogram, residuals vs predicted. All: feature importance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from onyxserve.training.evaluation.metrics import EvaluationResult, VersionEvaluation, label_indices

from onyxserve.html_report import Report, plt

_SMALL = (5.2, 3.8)
_MAX_POINTS = 20_000  # scatter plots subsample beyond this


def build_report(
    result: EvaluationResult,
    *,
    title: str = "Model evaluation",
    subtitle: str = "",
    importance: dict[str, Any] | None = None,
) -> Report:
    report = Report(title, subtitle)
    report.add_heading("Metrics")
    report.add_text(_verdict(result))
    rows = []
    for key, value in result.metrics.items():
        base = result.baseline.get(key)
        rows.append(
            [key, value, base if base is not None else "", (value - base) if base is not None else ""]
        )
    report.add_table(["metric", "model", "baseline", "model - baseline"], rows)
    if result.task == "binary":
        _binary(report, result)
    elif result.task == "multiclass":
        _multiclass(report, result)
    else:
        _regression(report, result)
    if importance:
        _importance(report, importance)
    return report


def write_report(outcome: VersionEvaluation, path: str | Path) -> Path:
    r = outcome.result
    subtitle = f"{outcome.version_dir} · {r.task} · {r.n_rows:,} rows · scored through the served path"
    return build_report(
        r,
        title=f"Evaluation of {outcome.model} version {outcome.version}",
        subtitle=subtitle,
        importance=outcome.importance,
    ).write(path)


def _verdict(r: EvaluationResult) -> str:
    if r.task == "binary":
        return (
            f"AUC {r.metrics['auc']:.4f} against the baseline's 0.5. At threshold {r.threshold:.4g}"
            + (f" (chosen for {r.threshold_target})" if r.threshold_target else "")
            + f": precision {r.metrics['precision']:.3f}, recall {r.metrics['recall']:.3f}, false-positive rate"
            f" {r.metrics['false_positive_rate']:.4f}. Baseline: a constant score predicting the majority class."
        )
    if r.task == "multiclass":
        return (
            f"Macro F1 {r.metrics['f1_macro']:.4f} against {r.baseline['f1_macro']:.4f} for the baseline that"
            f" always predicts the most frequent class (accuracy {r.baseline['accuracy']:.4f})."
        )
    return (
        f"RMSE {r.metrics['rmse']:.4g} against {r.baseline['rmse']:.4g} for the baseline that predicts the"
        f" mean; R² {r.metrics['r2']:.4f}."
    )


def _binary(report: Report, r: EvaluationResult) -> None:
    from sklearn import metrics as skm
    from sklearn.calibration import calibration_curve

    y = label_indices(r.y_true, r.labels)
    s = _unit(r.scores)
    pos_name, neg_name = str(r.labels[1]), str(r.labels[0])
    both = len(np.unique(y)) == 2

    report.add_heading("Confusion matrix")
    _confusion(report, np.asarray(r.confusion), [neg_name, pos_name], f"at threshold {r.threshold:.4g}")

    if both:
        report.add_heading("ROC and precision-recall")
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.4))
        fpr, tpr, _ = skm.roc_curve(y, s)
        a.plot(fpr, tpr, lw=1.6, label=f"model (AUC {r.metrics['auc']:.4f})")
        a.plot([0, 1], [0, 1], "--", color="grey", label="baseline (AUC 0.5)")
        a.plot(r.metrics["false_positive_rate"], r.metrics["recall"], "o", color="crimson", label="threshold")
        a.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC")
        a.legend(loc="lower right")
        if r.metrics["auc"] > 0.9:  # the interesting part is the left edge
            # labels right and the title inside: on the left and above they sat on the diagonal
            inset = a.inset_axes([0.4, 0.35, 0.5, 0.38])
            inset.semilogx(np.maximum(fpr, 1e-5), tpr, lw=1.2)
            inset.plot(max(r.metrics["false_positive_rate"], 1e-5), r.metrics["recall"], "o", color="crimson")
            inset.text(0.97, 0.05, "log FPR", fontsize=8, ha="right", va="bottom", transform=inset.transAxes)
            inset.yaxis.tick_right()
            inset.tick_params(labelsize=7)
        prec, rec, _ = skm.precision_recall_curve(y, s)
        b.plot(rec, prec, lw=1.6, label=f"model (AP {r.metrics['average_precision']:.4f})")
        b.axhline(y.mean(), ls="--", color="grey", label=f"baseline (positive rate {y.mean():.4f})")
        b.plot(r.metrics["recall"], r.metrics["precision"], "o", color="crimson", label="threshold")
        b.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
        b.legend(loc="lower left")
        report.add_figure(fig, "The red dot is the operating point at the chosen threshold.")

    report.add_heading("Scores by true class")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(0, 1, 51)
    for cls, name, color in ((0, neg_name, "tab:blue"), (1, pos_name, "tab:orange")):
        if (y == cls).any():
            a.hist(
                s[y == cls],
                bins=bins,
                alpha=0.6,
                density=True,
                color=color,
                label=f"true {name} ({(y == cls).sum():,})",
            )
    a.axvline(r.threshold, color="crimson", ls="--", label="threshold")
    a.set(xlabel=f"P({pos_name})", ylabel="density (log)", yscale="log", title="Score histogram per class")
    a.legend()
    # quantiles (dense where the scores are) plus an even grid and the threshold itself: with
    # quantiles alone the sparse top was interpolated, and the recall drawn at the threshold
    # disagreed with the table's
    grid = np.unique(np.r_[np.quantile(s, np.linspace(0, 1, 201)), np.linspace(0, 1, 201), r.threshold])
    prec, rec, fpr_t = _at(y, s, grid)
    b.plot(grid, prec, label="precision")
    b.plot(grid, rec, label="recall")
    b.plot(grid, fpr_t, label="false-positive rate")
    b.axvline(r.threshold, color="crimson", ls="--")
    b.set(xlabel="threshold", title="Metrics against the threshold", ylim=(0, 1.02))
    b.legend()
    report.add_figure(
        fig,
        "Densities are per class, so the rare class stays visible. Moving the threshold"
        " trades the curves on the right; `with_threshold(t)` recomputes every metric.",
    )

    if both:
        report.add_heading("Calibration")
        fig, ax = plt.subplots(figsize=_SMALL)
        true_frac, mean_pred = calibration_curve(y, s, n_bins=10, strategy="quantile")
        ax.plot(mean_pred, true_frac, "o-", label="model")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
        ax.set(
            xlabel="mean predicted probability (decile of scores)",
            ylabel="observed positive rate",
            xscale="symlog",
            yscale="symlog",
            title="Calibration",
        )
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend()
        report.add_figure(
            fig,
            "Each point is a tenth of the rows by score; on the diagonal, a score of p means"
            " a p chance of being positive. Axes are log-like below 0.001.",
        )


def _unit(scores: np.ndarray) -> np.ndarray:
    """Served probabilities are float32: a tree ensemble's 1.0 can come back as 1.0000001, which
    calibration_curve refuses ("y_prob has values outside [0, 1]"); the plots clip it back."""
    return np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)


def _at(y: np.ndarray, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and FPR of ``score >= t`` at every threshold of ``t``, from sorted scores
    (one pass, however many thresholds). Precision is 1 where nothing is predicted positive."""
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    tp = len(pos) - np.searchsorted(pos, t, side="left")
    fp = len(neg) - np.searchsorted(neg, t, side="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return precision, tp / max(len(pos), 1), fp / max(len(neg), 1)


def _confusion(report: Report, cm: np.ndarray, names: list[str], note: str) -> None:
    report.add_table(["true \\ predicted", *names], [[n, *row] for n, row in zip(names, cm.tolist())])
    k = len(names)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * k + 2.5), max(3.4, 0.6 * k + 2)))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{cm[i, j]:,}\n{norm[i, j]:.1%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalized)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    report.add_figure(fig, f"Counts and share of each true class, {note}.")


def _multiclass(report: Report, r: EvaluationResult) -> None:
    names = [str(x) for x in r.labels]
    report.add_heading("Per class")
    report.add_table(
        ["class", "precision", "recall", "F1", "support"],
        [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in r.per_class.items()],
    )
    report.add_heading("Confusion matrix")
    _confusion(report, np.asarray(r.confusion), names, "predicted = most probable class")
    if r.scores is None or np.asarray(r.scores).ndim != 2:
        return
    from sklearn.calibration import calibration_curve

    y = label_indices(r.y_true, r.labels)
    proba = _unit(r.scores)
    k = len(names)
    report.add_heading("Probabilities by true class")
    cols = min(k, 4)
    rows_n = -(-k // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.6 * rows_n), squeeze=False)
    bins = np.linspace(0, 1, 31)
    for j, name in enumerate(names):
        ax = axes[j // cols][j % cols]
        ax.hist(proba[y == j, j], bins=bins, alpha=0.6, density=True, label=f"true {name}")
        ax.hist(proba[y != j, j], bins=bins, alpha=0.6, density=True, label="other classes")
        ax.set_title(f"P({name})", fontsize=9)
        ax.legend(fontsize=7)
    for j in range(k, rows_n * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    report.add_figure(
        fig,
        "Each class's probability for rows of that class against all others: the less"
        " overlap, the better the class is told apart.",
    )
    report.add_heading("Calibration (one class against the rest)")
    fig, ax = plt.subplots(figsize=_SMALL)
    for j, name in enumerate(names):
        if 0 < (y == j).sum() < len(y):
            frac, mean = calibration_curve(y == j, proba[:, j], n_bins=10, strategy="quantile")
            ax.plot(mean, frac, "o-", ms=3, label=name)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title="Calibration")
    ax.legend(fontsize=8)
    report.add_figure(fig, "On the diagonal, a probability of p comes true p of the time.")


def _regression(report: Report, r: EvaluationResult) -> None:
    report.add_heading("Residuals (true - predicted)")
    report.add_table(list(r.residuals), [list(r.residuals.values())])
    y, pred = r.y_true, r.scores
    idx = (
        np.random.default_rng(0).choice(len(y), _MAX_POINTS, replace=False)
        if len(y) > _MAX_POINTS
        else slice(None)
    )
    res = y - pred
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    a, b, c = axes
    a.scatter(y[idx], pred[idx], s=4, alpha=0.4)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    a.plot([lo, hi], [lo, hi], "--", color="grey", label="perfect")
    a.axhline(y.mean(), color="tab:orange", ls=":", label="baseline (mean)")
    a.set(xlabel="true", ylabel="predicted", title="Predicted against true")
    a.legend()
    b.hist(res, bins=60, color="tab:blue", alpha=0.8)
    b.axvline(0, color="grey", ls="--")
    b.set(xlabel="residual", ylabel="rows", title="Residual histogram")
    c.scatter(pred[idx], res[idx], s=4, alpha=0.4)
    c.axhline(0, color="grey", ls="--")
    c.set(xlabel="predicted", ylabel="residual", title="Residuals against predicted")
    fig.tight_layout()
    report.add_figure(
        fig,
        "Residuals should centre on 0 with no trend against the prediction"
        + (f"; scatter plots show {_MAX_POINTS:,} random rows." if len(y) > _MAX_POINTS else "."),
    )


def _importance(report: Report, imp: dict[str, Any]) -> None:
    report.add_heading("Feature importance")
    values = np.asarray(imp["values"], dtype=float)
    order = np.argsort(-np.abs(values))[:25][::-1]
    names = [imp["features"][i] for i in order]
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.28 * len(order) + 1)))
    err = np.asarray(imp["std"], dtype=float)[order] if imp.get("std") else None
    ax.barh(range(len(order)), values[order], xerr=err, color="tab:blue", alpha=0.85)
    ax.set_yticks(range(len(order)), names, fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel="importance", title="Feature importance (top 25)")
    fig.tight_layout()
    report.add_figure(fig, f"Kind: {imp['kind']}.")
