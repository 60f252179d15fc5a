"""Numbers as macros (issue 21 item 1): names, clashes, the merge across sources, numbers.tex,
the numbers table, and the README's quoted numbers against figures/numbers.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffcore.paths import FIGURES_DIR, REPO_ROOT
from ffcore.report import numbers


def test_name_part() -> None:
    assert numbers.name_part("2a") == "TwoA"
    assert numbers.name_part("eca_cbam_phased") == "EcaCbamPhased"
    assert numbers.name_part("fp16") == "FpOneSix"


@pytest.mark.parametrize("bad", ["ap3", "ApPhase_3", "apEasy", "", "Ap Easy"])
def test_non_letter_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="letters only"):
        numbers.Numbers("06_evaluation", "smoke").add(bad, 1.0)


def test_write_merges_sources_and_refuses_clashes(tmp_path: Path) -> None:
    a = numbers.Numbers("06_evaluation", "smoke")
    a.add("ApPhaseThreeEasy", 0.98765 * 100, unit="%", description="AP easy")
    a.add("Verdict", "no significant difference")
    a.write(tmp_path)
    b = numbers.Numbers("01_model", "smoke")
    b.add("ParamsEcaCbam", 476357, fmt="{:,}")
    b.write(tmp_path)
    data = json.loads((tmp_path / "numbers.json").read_text())
    assert sorted(data) == ["ApPhaseThreeEasy", "ParamsEcaCbam", "Verdict"]
    assert data["ApPhaseThreeEasy"] == {
        "macro": "\\ffApPhaseThreeEasy", "value": 98.765, "text": "98.8", "unit": "%",
        "source": "06_evaluation", "profile": "smoke", "description": "AP easy",
    }  # fmt: skip
    # a re-run of one source replaces its own entries only
    again = numbers.Numbers("06_evaluation", "smoke")
    again.add("ApPhaseThreeEasy", 97.0)
    again.write(tmp_path)
    data = json.loads((tmp_path / "numbers.json").read_text())
    assert sorted(data) == ["ApPhaseThreeEasy", "ParamsEcaCbam"]
    assert data["ApPhaseThreeEasy"]["text"] == "97.0"
    tex = (tmp_path / "numbers.tex").read_text()
    assert "\\newcommand{\\ffApPhaseThreeEasy}{97.0}" in tex
    assert "\\newcommand{\\ffParamsEcaCbam}{476,357}" in tex
    clash = numbers.Numbers("07_ablation_figures", "smoke")
    clash.add("ParamsEcaCbam", 1)
    with pytest.raises(ValueError, match=r"ParamsEcaCbam \(by 01_model\)"):
        clash.write(tmp_path)
    with pytest.raises(ValueError, match="twice"):
        clash.add("ParamsEcaCbam", 2)


def test_numbers_table_is_escaped(tmp_path: Path) -> None:
    n = numbers.Numbers("benchmarks/deploy_precision.py", "smoke")
    n.add("SizeIntEightMb", 0.61, fmt="{:.2f}", unit="MB")
    n.add("ApDrop", 1.5, unit="%")
    n.write(tmp_path)
    table = (tmp_path / "numbers_table.tex").read_text()
    assert table == numbers.numbers_table_tex(tmp_path / "numbers.json")
    assert r"\begin{longtable}" in table and r"\bottomrule" in table
    assert r"ApDrop & 1.5 & \% & benchmarks/\allowbreak{}deploy\_precision.py" in table


def test_markers_rewrite_and_mismatch() -> None:
    entries = {"ApEasy": {"text": "98.8"}, "Params": {"text": "476,357"}}
    text = "AP <!-- ff:ApEasy -->97.0<!-- /ff --> with <!-- ff:Params -->476,357<!-- /ff -->"
    assert numbers.marker_mismatches(text, entries) == [
        "ApEasy: quoted '97.0', numbers.json has '98.8'"
    ]
    fixed = numbers.rewrite_markers(text, entries)
    assert (
        fixed == "AP <!-- ff:ApEasy -->98.8<!-- /ff --> with <!-- ff:Params -->476,357<!-- /ff -->"
    )
    assert numbers.marker_mismatches(fixed, entries) == []
    with pytest.raises(ValueError, match=r"README, line 2: marker ff:Nope names no number"):
        numbers.rewrite_markers("a\n<!-- ff:Nope -->1<!-- /ff -->", entries, "README")


def test_readme_numbers_agree_with_numbers_json() -> None:
    entries = numbers.load_numbers(FIGURES_DIR / numbers.NUMBERS_JSON)
    readme = (REPO_ROOT / "README.md").read_text()
    quoted = numbers.markers(readme)
    assert len(quoted) >= 10  # smoke AP, parameter counts, the study's headline numbers
    assert numbers.marker_mismatches(readme, entries) == []
    # numbers.tex and the table are what numbers.json gives
    assert (FIGURES_DIR / numbers.NUMBERS_TEX).read_text() == numbers.numbers_tex(entries)
    assert (FIGURES_DIR / numbers.NUMBERS_TABLE).read_text() == numbers.numbers_table_tex(
        FIGURES_DIR / numbers.NUMBERS_JSON
    )
