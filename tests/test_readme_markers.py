"""Issue 29, item 7: ``figures --readme`` refuses broken markers (unbalanced, nested, unknown,
malformed) with one line naming the file and the line, and leaves the README as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffcore.cli import main
from ffcore.report import numbers
from tests.errorline import one_error_line

ENTRIES = {
    "ApEasy": {"text": "98.8"},
    "Params": {"text": "476,357"},
    "Verdict": {"text": "ECA-CBAM and CBAM differ by 0.4 points (95 % CI -0.3 to 1.1), p = 0.21."},
}
GOOD = (
    "# Title\n"
    "AP <!-- ff:ApEasy -->97.0<!-- /ff --> with\n"
    "<!-- ff:Params -->1<!-- /ff --> parameters.\n"
    "<!-- ff:Verdict -->old\nsentence.<!-- /ff -->\n"
)


def test_well_formed_markers_are_found_with_their_lines() -> None:
    found = numbers.parse_markers(GOOD)
    assert [(m.name, m.text, m.line) for m in found] == [
        ("ApEasy", "97.0", 2), ("Params", "1", 3), ("Verdict", "old\nsentence.", 4),
    ]  # fmt: skip
    fixed = numbers.rewrite_markers(GOOD, ENTRIES)
    assert numbers.markers(fixed) == [(k, v["text"]) for k, v in ENTRIES.items()]
    assert fixed.startswith("# Title\nAP <!-- ff:ApEasy -->98.8<!-- /ff --> with\n")
    assert "<!-- ff:Verdict -->ECA-CBAM and CBAM differ by 0.4 points" in fixed


BROKEN = {
    # one closer removed: ApEasy runs into Params (the case)
    "closer removed": (
        GOOD.replace("97.0<!-- /ff -->", "97.0"),
        r"README.md, line 3: marker ff:Params opens inside ff:ApEasy \(opened on line 2",
    ),
    "stray closer": (GOOD + "text<!-- /ff -->\n", r"README.md, line 6: <!-- /ff --> closes no"),
    "unclosed": (GOOD + "<!-- ff:ApEasy -->9\n", r"README.md, line 6: marker ff:ApEasy is never"),
    "unknown": (GOOD + "<!-- ff:Nope -->1<!-- /ff -->\n", r"README.md, line 6: marker ff:Nope"),
    "malformed": (GOOD + "<!-- ff: Ap2 -->1<!-- /ff -->\n", r"README.md, line 6: malformed"),
    "html in value": (GOOD + "<!-- ff:ApEasy --><b>1</b><!-- /ff -->\n", r"line 6: .* holds '<'"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_markers_are_refused_naming_the_line(case: str) -> None:
    text, message = BROKEN[case]
    with pytest.raises(ValueError, match=message):
        numbers.rewrite_markers(text, ENTRIES, "README.md")
    if case == "unknown":  # the README check lists it with the others
        assert numbers.marker_mismatches(text, ENTRIES)[-1] == "Nope: not in numbers.json"
        return
    with pytest.raises(ValueError, match=message):
        numbers.marker_mismatches(text, ENTRIES, "README.md")


@pytest.mark.parametrize("case", ["closer removed", "unknown", "stray closer"])
def test_figures_readme_refuses_in_one_line_and_keeps_the_file(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "numbers.json").write_text(json.dumps(ENTRIES))
    readme = tmp_path / "README.md"
    readme.write_text(BROKEN[case][0])
    assert main(["figures", "--readme", str(readme), "--dir", str(figs)]) != 0
    line = one_error_line(capsys.readouterr().err, str(readme))
    assert ", line " in line
    assert readme.read_text() == BROKEN[case][0]
    readme.write_text(GOOD)
    assert main(["figures", "--readme", str(readme), "--dir", str(figs)]) == 0
    assert "rewrote 3 number(s)" in capsys.readouterr().out
    assert numbers.marker_mismatches(readme.read_text(), ENTRIES) == []
