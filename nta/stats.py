"""Group statistics: samples compared between groups (isolation method, donor, cohort).

The statistical unit is the **sample** (a biological replicate), not the video: the
videos of one sample are technical replicates and are averaged first (treating them as
independent would be pseudo-replication). Then, per group and per metric, mean ± SD and
the 95 % confidence interval of the mean (Student t); and between two groups the
difference of means with its Welch 95 % CI, Hedges' g, Welch's t-test and the
Mann–Whitney U test (exact for small samples without ties), all from scipy except
Hedges' g, which scipy does not provide.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = ["METRICS", "sample_table", "describe", "hedges_g", "compare", "group_statistics", "forest_plot"]

#: Metrics compared between groups: key → label with unit.
METRICS = {
    "mean_nm": "mean size (nm)",
    "d50_nm": "D50 (nm)",
    "window_fraction": "window fraction",
    "concentration_per_ml": "concentration (particles/mL)",
}


def sample_table(runs) -> pd.DataFrame:
    """One row per sample: its group and each metric averaged over its videos.

    Parameters
    ----------
    runs : list of nta.qc.Run

    Returns
    -------
    pandas.DataFrame
        Columns ``sample``, ``group``, ``videos`` and the :data:`METRICS` keys.
    """
    rows = []
    for r in runs:
        s = r.summary
        rows.append({"sample": r.sample, "group": r.group, "mean_nm": s.get("mean_nm"), "d50_nm": s.get("d50_nm"),
                     "window_fraction": s.get("window_fraction"), "concentration_per_ml": r.conc.get("concentration_per_ml")})
    df = pd.DataFrame(rows, columns=["sample", "group", *METRICS])
    for k in METRICS:
        df[k] = pd.to_numeric(df[k], errors="coerce")
    g = df.groupby("sample", sort=False)
    out = g[list(METRICS)].mean()
    out.insert(0, "videos", g.size())
    out.insert(0, "group", g["group"].first())
    return out.reset_index()


def describe(values, level: float = 0.95) -> dict:
    """n, mean, SD (ddof = 1) and the t-based confidence interval of the mean.

    Returns
    -------
    dict
        ``n``, ``mean``, ``sd``, ``ci_low``, ``ci_high`` (NaN where n is too small).
    """
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    n = x.size
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "sd": nan, "ci_low": nan, "ci_high": nan}
    mean = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": nan, "ci_low": nan, "ci_high": nan}
    sd = float(x.std(ddof=1))
    lo, hi = _st.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n)) if sd > 0 else (mean, mean)
    return {"n": n, "mean": mean, "sd": sd, "ci_low": float(lo), "ci_high": float(hi)}


def hedges_g(a, b) -> float:
    """Hedges' g: standardised difference of means (a − b), small-sample corrected.

    g = J · (mean_a − mean_b) / s_pooled, s_pooled² = ((n_a−1)s_a² + (n_b−1)s_b²)/(n_a+n_b−2),
    J = Γ(df/2) / (√(df/2) Γ((df−1)/2)), df = n_a + n_b − 2 (Hedges, J. Educ. Stat. 6, 107
    (1981); Hedges & Olkin, Statistical Methods for Meta-Analysis, 1985, eq. 5.10; the
    exact J rather than the 1 − 3/(4 df − 1) approximation).
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    na, nb = a.size, b.size
    df = na + nb - 2
    if na < 2 or nb < 2:
        return float("nan")
    sp = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / df)
    if sp == 0:
        return float("nan")
    j = math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)
    return float(j * (a.mean() - b.mean()) / sp)


def compare(a, b, level: float = 0.95) -> dict:
    """Compare two groups of sample values.

    Returns
    -------
    dict
        ``diff`` (mean a − mean b), ``diff_ci_low``, ``diff_ci_high`` (Welch CI, from
        ``scipy.stats.ttest_ind(equal_var=False).confidence_interval``), ``hedges_g``,
        ``welch_t``, ``welch_p``, ``mannwhitney_u``, ``mannwhitney_p``
        (``scipy.stats.mannwhitneyu``, two-sided, method "auto"), ``n_a``, ``n_b``.
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    nan = float("nan")
    out = {"n_a": int(a.size), "n_b": int(b.size), "diff": nan, "diff_ci_low": nan, "diff_ci_high": nan,
           "hedges_g": nan, "welch_t": nan, "welch_p": nan, "mannwhitney_u": nan, "mannwhitney_p": nan}
    if a.size == 0 or b.size == 0:
        return out
    out["diff"] = float(a.mean() - b.mean())
    if a.size >= 2 and b.size >= 2 and (a.var() > 0 or b.var() > 0):
        t = _st.ttest_ind(a, b, equal_var=False)
        ci = t.confidence_interval(level)
        out.update(welch_t=float(t.statistic), welch_p=float(t.pvalue), diff_ci_low=float(ci.low), diff_ci_high=float(ci.high))
        out["hedges_g"] = hedges_g(a, b)
    u = _st.mannwhitneyu(a, b, alternative="two-sided")
    out.update(mannwhitney_u=float(u.statistic), mannwhitney_p=float(u.pvalue))
    return out


def group_statistics(table: pd.DataFrame, metrics=None) -> dict:
    """Per-group descriptions and pairwise comparisons of a :func:`sample_table`.

    Returns
    -------
    dict
        ``groups`` (names, in order of appearance), ``describe`` ({metric: {group:
        :func:`describe`}}), ``compare`` ({metric: [{"a", "b", **:func:`compare`}]} for
        every pair of groups). Empty when fewer than one group is named.
    """
    metrics = list(metrics or METRICS)
    t = table[table["group"].astype(str) != ""]
    groups = list(dict.fromkeys(t["group"]))
    out = {"groups": groups, "describe": {}, "compare": {}}
    for m in metrics:
        out["describe"][m] = {g: describe(t.loc[t["group"] == g, m]) for g in groups}
        pairs = []
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                c = compare(t.loc[t["group"] == groups[i], m], t.loc[t["group"] == groups[j], m])
                pairs.append({"a": groups[i], "b": groups[j], **c})
        out["compare"][m] = pairs
    return out


def forest_plot(gs: dict):
    """Forest-style plot: per metric, each group's mean with its 95 % CI and the samples.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(gs["describe"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.6 * len(gs["groups"]) + 1.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, g in enumerate(gs["groups"]):
            d = gs["describe"][m][g]
            y = len(gs["groups"]) - 1 - i
            if math.isfinite(d["ci_low"]):
                ax.plot([d["ci_low"], d["ci_high"]], [y, y], color="C0", lw=2)
            ax.plot([d["mean"]], [y], "s", color="C0", ms=7)
        ax.set_yticks(range(len(gs["groups"])))
        ax.set_yticklabels(list(reversed(gs["groups"])))
        ax.set_xlabel(METRICS.get(m, m))
        ax.grid(axis="x", alpha=0.3)
        if m == "concentration_per_ml":
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    fig.suptitle("group means with 95 % CI (unit: sample)", fontsize=10)
    fig.tight_layout()
    return fig
