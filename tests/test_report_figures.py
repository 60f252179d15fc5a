"""The figure helpers: headless outside a kernel, source labels, restarts drawn as jumps,
honest latency ratios, readable phase tables."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ffcore.paths import REPO_ROOT


def test_scripts_are_headless_and_do_not_touch_a_kernel_backend() -> None:
    code = "import ffcore.report.figures, matplotlib; print(matplotlib.get_backend())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "DISPLAY": ":0"},
    )  # fmt: skip
    assert out.stdout.strip().lower() == "agg"
    source = (REPO_ROOT / "ffcore" / "report" / "figures.py").read_text()
    assert 'matplotlib.use("Agg")' in source and "_inside_ipython()" in source


def test_source_label_and_plural() -> None:
    from ffcore.report import figures

    assert figures.source_label("smoke") == "smoke run, synthetic data"
    assert figures.plural(1, "face") == "1 face" and figures.plural(0, "face") == "0 faces"
    assert figures.plural(1200, "face") == "1,200 faces"
    fig, _ = figures.new_figure()
    figures.add_source(fig, "smoke run, synthetic data")
    assert "smoke run, synthetic data" in fig._suptitle.get_text()


def test_learning_rate_restarts_become_gaps() -> None:
    from ffcore.report.training_curves import break_at_restarts

    x, y = break_at_restarts(pd.Series([0, 1, 2, 3]), pd.Series([1.0, 0.5, 1.0, 0.5]))
    assert np.isnan(y[2]) and np.isnan(x[2]) and len(y) == 5  # a gap before the jump up


def test_phase_table_shows_adam_eps() -> None:
    from ffcore.report.training_curves import phase_table

    assert set(phase_table().loc["eps"]) == {"1e-08"}


def test_pr_curve_starts_where_the_data_starts() -> None:
    from ffcore.report.detection_figures import interpolated_pr

    precision = np.array([np.nan, np.nan, 1.0, 0.5, 0.6])
    recall = np.array([np.nan, np.nan, 0.2, 0.4, 0.6])
    p, r = interpolated_pr(precision, recall)
    assert r[0] == pytest.approx(0.2) and list(p) == [1.0, 0.6, 0.6]


def test_attention_block_titles_are_human() -> None:
    from ffcore.report.ablation import block_label

    assert block_label("neck_attention.0") == "BiFPN level P3"
    assert block_label("backbone_attention.2") == "backbone stage 3 (stride 32)"


def test_latency_ratio_reports_spread_and_says_when_no_difference() -> None:
    from ffcore.report.timing import NO_DIFFERENCE, compare_latency, ratio_verdict

    assert ratio_verdict(1.05, 0.97, 1.12) == NO_DIFFERENCE
    assert ratio_verdict(1.5, 1.4, 1.6).startswith("1.50")
    table = compare_latency({"a": lambda: sum(range(100)), "b": lambda: sum(range(100))}, reps=5)
    assert list(table.columns) == [
        "median_ms", "p25_ms", "p75_ms", "ratio", "ratio_p25", "ratio_p75", "verdict", "reps",
    ]  # fmt: skip
    assert table.loc["a", "verdict"] == "reference" and table.loc["a", "ratio"] == 1.0
    assert table.loc["b", "ratio_p25"] <= table.loc["b", "ratio"] <= table.loc["b", "ratio_p75"]


def test_ap_bar_labels_have_one_decimal_and_never_round_up_to_100() -> None:
    from ffcore.report import figures
    from ffcore.report.ablation import plot_ap_by_phase

    ap = pd.DataFrame(
        {"easy": [0.996, 0.999, 0.9996, 1.0], "medium": [0.9733, 0.5, 0.5, 0.5],
         "hard": [0.7, 0.7, 0.7, float("nan")]},
        index=pd.Index(["1", "2a", "2b", "3"], name="phase"),
    )  # fmt: skip
    fig = plot_ap_by_phase(ap, source="smoke run, synthetic data")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]  # bar labels, phase by phase
    easy = [labels[3 * k] for k in range(4)]  # the first of the three bars of each phase
    assert easy == ["99.6", "99.9", "99.9", "100.0"]  # 99.96 is not "100.0"
    assert "97.3" in labels and "100" not in labels
    assert ax.get_yticks().max() == 100  # the room above the bars has no AP tick
    assert figures.percent_text(99.96) == "99.9" and figures.percent_text(74.46) == "74.5"
    figures.plt.close(fig)


def _smoke_like_timeline() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four phases as the smoke run logs them: phase 1 from a loss of 26, the probe total 4.13
    -> 5.18 where ECA switches on (phase 2a's row 0) and 3.31 -> 5.89 where SAM does."""
    epochs = {"1": 12, "2a": 3, "2b": 4, "3": 3}
    probe_rows = {"1": [26.0, 9.0, 4.13], "2a": [5.18, 3.6, 3.31], "2b": [5.89, 3.4, 3.2],
                  "3": [3.3, 3.1, 3.0]}  # fmt: skip
    frames, probes, offset = [], [], 0.0
    for pid, n in epochs.items():
        t = np.linspace(0, n, 10 * n, endpoint=False)
        total = np.interp(t, np.linspace(0, n, 3), probe_rows[pid])
        frames.append(pd.DataFrame({"phase": pid, "epoch_float": t, "global_epoch": offset + t,
                                    "total": total, "box": 0.2 * total, "lr": 1e-3}))  # fmt: skip
        probes.append(pd.DataFrame({"phase": pid, "epoch": [0, 1, n],
                                    "global_epoch": offset + np.array([0, 1, n]),
                                    "probe_total": probe_rows[pid]}))  # fmt: skip
        offset += n
    return pd.concat(frames, ignore_index=True), pd.concat(probes, ignore_index=True)


def test_timeline_shows_the_loss_jumps_where_attention_switches_on() -> None:
    from ffcore.report import ablation, figures

    timeline, probe = _smoke_like_timeline()
    assert [j[1:] for j in ablation.switch_ons(probe)] == [
        ("ECA", 12.0, 4.13, 5.18), ("SAM", 15.0, 3.31, 5.89)
    ]  # fmt: skip
    fig = ablation.plot_timeline(timeline, source="smoke run", probe=probe)
    fig.draw_without_rendering()

    def drawn_inches(ax, low: float, high: float) -> float:
        """How tall the jump low -> high is drawn on ``ax`` (0 where the axis cuts it off)."""
        y0, y1 = sorted(ax.get_ylim())
        if not y0 <= low < high <= y1:
            return 0.0
        pts = ax.transData.transform([(0, low), (0, high)])
        return float(pts[1, 1] - pts[0, 1]) / fig.dpi

    for low, high in ((4.13, 5.18), (3.31, 5.89)):  # under phase 1's 26 they were ~0.07 in
        assert max(drawn_inches(ax, low, high) for ax in fig.axes) >= 0.25, (low, high)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("ECA on" in t and "4.13 \u2192 5.18" in t for t in texts)
    assert any("SAM on" in t and "3.31 \u2192 5.89" in t for t in texts)
    assert figures.print_problems(fig) == []
    figures.plt.close(fig)
