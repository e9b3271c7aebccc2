"""Group statistics checked against scipy (and a textbook formula) on a small table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nta.stats import compare, describe, group_statistics, hedges_g

TABLE = pd.DataFrame({
    "sample": ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4", "b5"],
    "group": ["UC"] * 4 + ["SEC"] * 5,
    "mean_nm": [112.0, 118.5, 109.2, 121.3, 131.0, 127.4, 139.8, 125.1, 133.3],
    "d50_nm": [101.0, 104.2, 99.5, 108.8, 118.1, 115.0, 124.2, 112.7, 119.9],
    "window_fraction": [0.86, 0.81, 0.88, 0.79, 0.71, 0.74, 0.66, 0.75, 0.70],
    "concentration_per_ml": [2.1e10, 3.4e10, 2.8e10, 1.9e10, 8.2e9, 9.9e9, 6.1e9, 1.2e10, 7.7e9],
})


def test_describe_matches_scipy():
    x = TABLE.loc[TABLE.group == "UC", "mean_nm"].to_numpy()
    d = describe(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert d["n"] == 4 and d["mean"] == pytest.approx(x.mean()) and d["sd"] == pytest.approx(x.std(ddof=1))
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((lo, hi))
    assert math.isnan(describe([1.0])["ci_low"]) and describe([])["n"] == 0


@pytest.mark.parametrize("metric", ["mean_nm", "d50_nm", "window_fraction", "concentration_per_ml"])
def test_compare_matches_scipy(metric):
    a = TABLE.loc[TABLE.group == "UC", metric].to_numpy()
    b = TABLE.loc[TABLE.group == "SEC", metric].to_numpy()
    c = compare(a, b)
    w = stats.ttest_ind(a, b, equal_var=False)
    ci = w.confidence_interval(0.95)
    assert c["diff"] == pytest.approx(a.mean() - b.mean())
    assert c["welch_t"] == pytest.approx(w.statistic) and c["welch_p"] == pytest.approx(w.pvalue)
    assert (c["diff_ci_low"], c["diff_ci_high"]) == pytest.approx((ci.low, ci.high))
    # Welch CI by hand (Welch–Satterthwaite df) as an independent check of scipy's
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert c["diff_ci_high"] - c["diff"] == pytest.approx(half)
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert c["mannwhitney_u"] == pytest.approx(u.statistic) and c["mannwhitney_p"] == pytest.approx(u.pvalue)
    assert (c["n_a"], c["n_b"]) == (4, 5)


def test_hedges_g_textbook():
    a = TABLE.loc[TABLE.group == "UC", "mean_nm"].to_numpy()
    b = TABLE.loc[TABLE.group == "SEC", "mean_nm"].to_numpy()
    sp = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    d = (a.mean() - b.mean()) / sp
    df = a.size + b.size - 2
    # the usual approximation J ≈ 1 − 3/(4 df − 1) agrees with the exact J to < 0.5 % at df = 7
    assert hedges_g(a, b) == pytest.approx(d * (1 - 3 / (4 * df - 1)), rel=5e-3)
    assert hedges_g(a, b) < 0 and hedges_g(b, a) == pytest.approx(-hedges_g(a, b))
    assert math.isnan(hedges_g([1.0], [2.0, 3.0]))


def test_group_statistics_table():
    gs = group_statistics(TABLE)
    assert gs["groups"] == ["UC", "SEC"]
    assert gs["describe"]["d50_nm"]["SEC"]["n"] == 5
    (pair,) = gs["compare"]["window_fraction"]
    assert pair["a"] == "UC" and pair["b"] == "SEC" and pair["diff"] > 0
    from nta.stats import forest_plot

    fig = forest_plot(gs)
    assert len(fig.axes) == 4
