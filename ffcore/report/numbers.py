r"""The numbers a thesis quotes, as LaTeX macros: never typed by hand.

A notebook (or script) collects its numbers in one ``Numbers`` (``add(name, value, fmt, unit,
description)``) and writes them (``write``) into ``figures/numbers.json``, keyed by name and
merged with the other sources' numbers (the entries of this source are replaced, those of the
others kept, so one notebook's re-run drops nothing else). From the JSON come
``figures/numbers.tex`` (``\newcommand{\ffApPhaseThreeEasy}{98.8}``: letters only, one prefix
``ff``; ``figures/preamble.tex`` inputs it) and ``figures/numbers_table.tex`` (a booktabs
longtable of every number, ``numbers_table_tex``; ``all_figures.tex`` inputs it).

A name is refused unless it is letters only and starts with a capital (``name_part`` makes
names from code names: ``"2a"`` -> ``TwoA``, ``eca_cbam`` -> ``EcaCbam``), and a name already
registered by another source is a clash (an error naming both sources).

The README quotes numbers between markers, ``<!-- ff:ApPhaseThreeEasy -->98.8<!-- /ff -->``:
``rewrite_markers`` sets each from numbers.json, ``marker_mismatches`` lists those that differ
(a test keeps the README from drifting).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffcore.paths import FIGURES_DIR, repo_path

NUMBERS_JSON = "numbers.json"
NUMBERS_TEX = "numbers.tex"
NUMBERS_TABLE = "numbers_table.tex"
PREFIX = "ff"
_NAME = re.compile(r"[A-Z][A-Za-z]*")
_DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def name_part(text: object) -> str:
    """A code name as letters for a macro name: ``"2a"`` -> ``TwoA``, ``eca_cbam_phased`` ->
    ``EcaCbamPhased``, ``fp16`` -> ``FpOneSix``; other characters separate words."""
    words = re.findall(r"[A-Za-z]+|\d", str(text))
    return "".join(_DIGITS[int(w)] if w.isdigit() else w[:1].upper() + w[1:] for w in words)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"number name must be letters only and start with a capital (it becomes the macro "
            f"\\{PREFIX}<name>), got {name!r}"
        )


def _format(value: Any, fmt: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "--"
    return fmt.format(value)


def _json_value(value: Any) -> Any:
    """A JSON-safe value: numpy scalars as Python numbers, NaN as None."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclass(frozen=True)
class Number:
    name: str
    value: Any  # a number or a string (a verdict)
    text: str  # as the thesis prints it
    unit: str
    description: str


class Numbers:
    """The numbers of one source (a notebook or script) in one run."""

    def __init__(self, source: str, profile: str) -> None:
        self.source = source
        self.profile = profile
        self._items: dict[str, Number] = {}

    def add(
        self, name: str, value: Any, fmt: str = "{:.1f}", unit: str = "", description: str = ""
    ) -> Number:
        """Register ``value`` under ``name`` (macro ``\\ff<name>``), printed with ``fmt``."""
        check_name(name)
        if name in self._items:
            raise ValueError(f"number {name!r} registered twice by {self.source}")
        number = Number(name, _json_value(value), _format(value, fmt), unit, description)
        self._items[name] = number
        return number

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> Number:
        return self._items[name]

    def entries(self) -> dict[str, dict[str, Any]]:
        return {
            n.name: {
                "macro": f"\\{PREFIX}{n.name}",
                "value": n.value,
                "text": n.text,
                "unit": n.unit,
                "source": self.source,
                "profile": self.profile,
                "description": n.description,
            }
            for n in self._items.values()
        }

    def write(self, out_dir: str | Path | None = None) -> list[Path]:
        """Merge into ``<out_dir>/numbers.json`` (replacing this source's entries) and rewrite
        ``numbers.tex`` and ``numbers_table.tex``; a name another source owns is an error."""
        out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
        out.mkdir(parents=True, exist_ok=True)
        current = load_numbers(out / NUMBERS_JSON)
        kept = {k: v for k, v in current.items() if v.get("source") != self.source}
        clashes = sorted(set(kept) & set(self._items))
        if clashes:
            owners = ", ".join(f"{k} (by {kept[k].get('source')})" for k in clashes)
            raise ValueError(
                f"{self.source} registers numbers already in {out / NUMBERS_JSON}: {owners}"
            )
        merged = dict(sorted((kept | self.entries()).items()))
        return write_numbers(merged, out)


def load_numbers(path: str | Path) -> dict[str, dict[str, Any]]:
    """The entries of a numbers.json ({} when missing)."""
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p} must hold an object keyed by number name")
    return data


def write_numbers(entries: Mapping[str, Mapping[str, Any]], out: Path) -> list[Path]:
    for name in entries:
        check_name(name)
    paths = [out / NUMBERS_JSON, out / NUMBERS_TEX, out / NUMBERS_TABLE]
    paths[0].write_text(json.dumps(dict(entries), indent=1, sort_keys=True) + "\n")
    paths[1].write_text(numbers_tex(entries))
    paths[2].write_text(numbers_table_tex(paths[0]))
    return paths


def numbers_tex(entries: Mapping[str, Mapping[str, Any]]) -> str:
    from ffcore.report.figures import latex_escape

    lines = ["% Generated by ffcore.report.numbers from numbers.json: do not edit."]
    for name in sorted(entries):
        text = latex_escape(entries[name]["text"])
        lines.append(f"\\newcommand{{\\{PREFIX}{name}}}{{{text}}}")
    return "\n".join(lines) + "\n"


def numbers_table_tex(path: str | Path) -> str:
    """A booktabs ``longtable`` of the numbers of ``path`` (a numbers.json): name (the macro is
    ``\\ff<name>``), value, unit, source; LaTeX-escaped, in footnote size (9 pt in an 11 pt
    text) with the value and source columns wrapped (a source path may break after a slash), so
    the table keeps within the text width (needs the longtable, booktabs and array packages)."""
    from ffcore.report.figures import latex_escape

    entries = load_numbers(path)
    lines = [
        "% Generated by ffcore.report.numbers from numbers.json: do not edit.",
        r"\begingroup\footnotesize\setlength{\tabcolsep}{4pt}",
        r"\begin{longtable}{@{}l>{\raggedleft\arraybackslash}p{2.6cm}l"
        r">{\raggedright\arraybackslash}p{3.2cm}@{}}",
        # the caption once (one entry in a list of tables); the column heads on every page
        rf"\caption{{The numbers quoted in the text: each is the macro "
        rf"\texttt{{\textbackslash {PREFIX}}}\textit{{name}} of figures/numbers.tex}}\\",
        r"\toprule",
        r"name & value & unit & source \\",
        r"\midrule",
        r"\endfirsthead",
        r"\toprule",
        r"name & value & unit & source \\",
        r"\midrule",
        r"\endhead",
    ]
    for name in sorted(entries):
        e = entries[name]
        source = latex_escape(f"{e.get('source', '')} ({e.get('profile', '')})")
        cells = [latex_escape(name), latex_escape(str(e.get("text", ""))),
                 latex_escape(str(e.get("unit", ""))), source.replace("/", "/\\allowbreak{}")]  # fmt: skip
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{longtable}", r"\endgroup", ""]
    return "\n".join(lines)


# -- README markers -------------------------------------------------------------------------------
MARKER = re.compile(r"<!-- ff:([A-Za-z]+) -->([^<]*)<!-- /ff -->")  # never spans markers


def markers(text: str) -> list[tuple[str, str]]:
    """(name, quoted text) of every marker in ``text``."""
    return MARKER.findall(text)


def rewrite_markers(text: str, entries: Mapping[str, Mapping[str, Any]]) -> str:
    """``text`` with every marker's content set to its number's text; an unknown name is an
    error naming it."""
    unknown = sorted({n for n, _ in markers(text) if n not in entries})
    if unknown:
        raise KeyError(f"markers name numbers not in numbers.json: {', '.join(unknown)}")
    return MARKER.sub(lambda m: f"<!-- ff:{m[1]} -->{entries[m[1]]['text']}<!-- /ff -->", text)


def marker_mismatches(text: str, entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per marker whose text differs from numbers.json (or names no number)."""
    found = []
    for name, quoted in markers(text):
        if name not in entries:
            found.append(f"{name}: not in numbers.json")
        elif quoted != entries[name]["text"]:
            found.append(f"{name}: quoted {quoted!r}, numbers.json has {entries[name]['text']!r}")
    return found
