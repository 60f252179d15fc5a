"""Print quality at thesis size: every figure function makes a figure as wide as it is
included (the text width or half of it; all_figures.tex includes it at its natural size) whose
smallest text prints at MIN_FONT_PT or more; no table is shrunk below 90 %; generated LaTeX
escapes what plain text means; captions are distinct; real targets are drawn apart."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from ffcore.paths import REPO_ROOT
from ffcore.report import figures
from ffcore.report.companion import table_scales


def _check(fig) -> None:
    assert figures.print_problems(fig) == []
    width = fig.get_figwidth()
    assert width in (pytest.approx(16 / 2.54), pytest.approx((16 / 2.54 - 0.2) / 2))
    figures.plt.close(fig)


def test_the_style_prints_no_text_below_8_pt() -> None:
    figures.use_style()
    rc = figures.plt.rcParams
    keys = ("font.size", "axes.titlesize", "axes.labelsize", "legend.fontsize",
            "xtick.labelsize", "ytick.labelsize", "figure.titlesize")  # fmt: skip
    assert min(float(rc[k]) for k in keys) >= 8.0 and rc["axes.unicode_minus"]
    assert pytest.approx(6.299, abs=1e-3) == figures.TEXT_WIDTH_IN


def test_print_problems_finds_small_text_and_a_wrong_width() -> None:
    fig, ax = figures.new_figure("full")
    ax.text(0.5, 0.5, "tiny", fontsize=5)
    assert any("tiny" in p for p in figures.print_problems(fig))
    with pytest.raises(ValueError, match="width"):
        figures.new_figure(7.1)


def test_saved_pdf_is_as_wide_as_the_figure(tmp_path) -> None:
    fig, ax = figures.new_figure("column")
    ax.plot([0, 1], [-1, 1], label="a line")
    figures.legend_outside(ax)
    figures.add_source(fig, "smoke run, synthetic data")
    pdf = figures.save_figure(fig, "w", tmp_path)[0]
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", pdf.read_bytes())
    assert float(box.group(1)) / 72 == pytest.approx(figures.HALF_WIDTH_IN, abs=0.01)
    assert r"\includegraphics{figures/w}" in (tmp_path / "all_figures.tex").read_text()


def test_latex_escape_prints_what_the_text_says() -> None:
    e = figures.latex_escape
    assert e("<= 0.7 MB") == r"$\leq$ 0.7 MB"
    assert e('the "~460K" claim') == r"the ``$\approx$460K'' claim"
    assert e("`make reproduce` 5 %") == r"\texttt{make reproduce} 5 \%"
    assert e("ECA-CBAM - CBAM") == r"ECA-CBAM $-$ CBAM" and e("-0.2") == r"$-$0.2"
    assert e("0.93-0.99") == "0.93--0.99" and e("a_b & #1 $") == r"a\_b \& \#1 \$"
    assert figures.format_number(-0.25, 2) == r"$-$0.25"


def test_captions_are_distinct_and_name_phase_and_kind() -> None:
    index = figures.latex_index()
    captions = re.findall(r"\\caption\{(.*)\}", index)
    assert len(captions) == len(set(captions))
    for phase in ("1", "2a", "2b", "3"):
        assert re.search(rf"\\caption\{{Phase {phase} \(", index)
    assert "bars" not in index.split(r"\label{tab:ap_by_phase}")[0].rsplit(r"\caption", 1)[1]


def test_source_names_model_data_and_photo_apart() -> None:
    label = figures.source_label("smoke", photo="real")
    assert label == "model: smoke run, synthetic data; photo: real"
    fig, _ = figures.new_figure()
    figures.add_source(fig, label)
    assert fig._suptitle.get_text() == label  # no "source: synthetic" over a real photo


def test_ap_by_phase_draws_real_targets_apart() -> None:
    from ffcore.report.ablation import plot_ap_by_phase

    ap = pd.DataFrame(
        {"easy": [0.9, 0.92, 0.93, 0.95], "medium": [0.8] * 4, "hard": [0.5] * 4},
        index=pd.Index(["1", "2a", "2b", "3"], name="phase"),
    )
    fig = plot_ap_by_phase(ap, source="smoke run, synthetic data")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    target = [t for t in labels if "WIDER FACE" in t]
    assert len(target) == 1 and "not comparable" in target[0]
    assert not fig.axes[0].collections  # no target line drawn across the bars
    _check(fig)


def test_figure_functions_print_at_thesis_size(tmp_path) -> None:
    from ffcore.report import ablation, detection_figures, study, training_curves
    from ffcore.report.attention_maps import BlockAttention

    n = 40
    hist = pd.DataFrame({"phase": "3", "epoch_float": np.linspace(0, 2, n),
                         "lr": np.linspace(1e-3, 1e-5, n), "total": np.linspace(20, 5, n)})  # fmt: skip
    hist.to_csv(tmp_path / "h.csv", index=False)
    pd.DataFrame({"epoch": [0, 1, 2], "probe_total": [20, 9, 6]}).to_csv(tmp_path / "e.csv")
    _check(training_curves.plot_training(tmp_path / "h.csv", tmp_path / "e.csv", "smoke run"))

    timeline = pd.concat(
        [hist.assign(phase=p, global_epoch=hist.epoch_float + 2 * k, box=1.0, **{"class": 2.0},
                     landmark=3.0) for k, p in enumerate(("1", "2a", "2b", "3"))],
        ignore_index=True,
    )  # fmt: skip
    probe = pd.DataFrame({"global_epoch": [2.0, 4.0], "probe_total": [9.0, 6.0]})
    _check(ablation.plot_timeline(timeline, source="smoke run", probe=probe))

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    maps = {p: [BlockAttention("neck_attention.0", rng.random(16), None if p == "2a"
                               else rng.random((8, 12)))] for p in ("2a", "2b", "3")}  # fmt: skip
    _check(ablation.plot_attention(image, maps, source="model: smoke run; photo: real"))

    pr = {s: (np.linspace(1, 0.5, 20), np.linspace(0, 0.9, 20)) for s in ("easy", "medium")}
    _check(detection_figures.plot_pr_curves(pr, {"easy": 0.9, "medium": 0.8}, "smoke run"))

    class Dets:
        boxes = np.array([[5.0, 5, 40, 40], [50, 10, 90, 50]])
        scores = np.array([0.9, 0.7])
        landmarks = np.zeros((2, 10))

    panels = [("image a", image, Dets()), ("image b", image, Dets())]
    _check(detection_figures.plot_detection_panels(panels, 0.5, source="smoke run"))

    rows = [{"configuration": c, "seed": s, "subset": sub, "ap": 0.7 + 0.01 * s + 0.02 * k}
            for k, c in enumerate(("none", "cbam_phased", "eca_cbam_phased"))
            for s in range(3) for sub in study.SUBSETS]  # fmt: skip
    results = pd.DataFrame(rows)
    _check(study.plot_study(results, study.summarize(results), "study profile, synthetic data"))
    _check(study.plot_forest(study.paired_differences(results), "study profile, synthetic data"))
    # one comparison, one seed (what the CI study test trains): the legend is taller than
    # three rows of intervals, and must still fit on the page
    one = results[results.configuration.isin(("none", "eca_cbam_phased")) & (results.seed == 0)]
    _check(study.plot_forest(study.paired_differences(one), "study profile, synthetic data"))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_wide_tables_are_never_shrunk_below_90_percent(tmp_path) -> None:
    """Compiles a narrow, a slightly wide and a very wide table and reads the width LaTeX
    measured (\\fftable logs it): each is printed at a scale of at least 0.9."""
    out = tmp_path / "figures"
    wide = pd.DataFrame({f"a long column header {k}": [-1.25 * k, 1000.5] for k in range(14)})
    for name, frame in {
        "narrow": wide.iloc[:, :2],
        "wide": wide.iloc[:, :8],
        "widest": wide,
    }.items():
        figures.save_table(frame, name, out, index=False)
    index = (out / "all_figures.tex").read_text()
    assert "resizebox" not in index and "scalebox" not in index
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\input{figures/preamble}\\begin{document}"
        "\\input{figures/all_figures}\\end{document}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    log = (tmp_path / "doc.log").read_text(errors="replace")
    found = table_scales(log)
    assert set(found) == {"narrow", "wide", "widest"}
    for name, scale in found.items():
        assert scale >= 0.9, name
    assert REPO_ROOT.is_dir()


def _overlaps(a, b) -> bool:
    """Two window extents share more than a hairline (0.5 px at the figure's dpi)."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5


def test_val_detection_panels_are_large_and_scores_clear_of_titles() -> None:
    from ffcore.report import detection_figures

    image = np.full((160, 160, 3), 128, np.uint8)

    class Dets:  # one box touching the top edge: its label went above the image
        boxes = np.array([[10.0, 0, 60, 40], [80, 70, 130, 120]])
        scores = np.array([0.93, 0.71])
        landmarks = None

    panels = [(f"image {k}", image, Dets()) for k in range(4)]
    fig = detection_figures.plot_detection_panels(panels, 0.5, source="smoke run")
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 4
    for ax in shown:  # at print size (the figure is printed at 100 %)
        box = ax.get_window_extent(r)
        assert max(box.width, box.height) / fig.dpi >= detection_figures.MIN_PANEL_IN
    titles = [ax.title.get_window_extent(r) for ax in shown]
    labels = [t for ax in shown for t in ax.texts if t.get_gid() == detection_figures.SCORE_LABEL]
    assert len(labels) == 8
    for label in labels:
        extent = label.get_window_extent(r)
        assert not any(_overlaps(extent, title) for title in titles), label.get_text()
        assert extent.y1 <= label.axes.get_window_extent(r).y1 + 0.5  # inside its image
    _check(fig)


def test_failure_gallery_titles_clear_of_each_other_and_of_the_crops() -> None:
    from ffcore.report import detection_figures

    class Crop:
        def __init__(self, h: float, score: float) -> None:
            self.face_height, self.score = h, score

        def crop(self) -> np.ndarray:
            return np.full((40, 40, 3), 90, np.uint8)

    rows = [("missed", [Crop(80 - k, float("nan")) for k in range(8)]),
            ("false positive", [Crop(30 + k, 0.99 - 0.01 * k) for k in range(7)])]  # fmt: skip
    fig = detection_figures.plot_failure_gallery(rows, source="smoke run, synthetic data", ncols=8)
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 15
    texts = [ax.title for ax in shown] + [fig._suptitle]
    assert "score 0.99" in shown[8].get_title() and "score" not in shown[0].get_title()
    extents = [t.get_window_extent(r) for t in texts]
    for i, a in enumerate(extents):
        assert not any(_overlaps(a, b) for b in extents[i + 1 :]), texts[i].get_text()
        # no title over a crop (its own is below it; the row above ends above it)
        assert not any(_overlaps(a, ax.get_window_extent(r)) for ax in shown), texts[i].get_text()
    assert [shown[0].get_ylabel(), shown[8].get_ylabel()] == ["missed", "false\npositive"]
    _check(fig)
