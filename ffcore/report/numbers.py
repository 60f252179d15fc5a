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

from ffcore.atomic import write_texts
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
    texts = {  # the three agree, or none changes
        out / NUMBERS_JSON: json.dumps(dict(entries), indent=1, sort_keys=True) + "\n",
        out / NUMBERS_TEX: numbers_tex(entries),
        out / NUMBERS_TABLE: numbers_table_tex(entries),
    }
    return write_texts(texts)


def numbers_tex(entries: Mapping[str, Mapping[str, Any]]) -> str:
    from ffcore.report.figures import latex_escape

    lines = ["% Generated by ffcore.report.numbers from numbers.json: do not edit."]
    for name in sorted(entries):
        text = latex_escape(entries[name]["text"])
        lines.append(f"\\newcommand{{\\{PREFIX}{name}}}{{{text}}}")
    return "\n".join(lines) + "\n"


def numbers_table_tex(path: str | Path | Mapping[str, Mapping[str, Any]]) -> str:
    """A booktabs ``longtable`` of the numbers of ``path`` (a numbers.json, or its entries): name (the macro is
    ``\\ff<name>``), value, unit, source; LaTeX-escaped, in footnote size (9 pt in an 11 pt
    text) with the value and source columns wrapped (a source path may break after a slash), so
    the table keeps within the text width (needs the longtable, booktabs and array packages)."""
    from ffcore.report.figures import latex_escape

    entries = path if isinstance(path, Mapping) else load_numbers(path)
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
MARKER = re.compile(r"<!-- ff:([A-Za-z]+) -->([^<]*)<!-- /ff -->")  # a well-formed marker
OPENER = re.compile(r"<!-- ff:([A-Za-z]+) -->")
CLOSER = "<!-- /ff -->"
# anything meant as a marker's opener or closer, well-formed or not: ``<!-- ff:...-->``, ``<!--/ff-->``
_MARKER_LIKE = re.compile(r"<!--\s*(?:/\s*ff\s*-->|ff\s*:.*?-->)", re.S)


@dataclass(frozen=True)
class Marker:
    name: str
    text: str  # the quoted value: free-form text without '<'
    line: int  # 1-based line of the opener
    start: int  # offset of the value in the text
    end: int


def parse_markers(text: str, where: str = "text") -> list[Marker]:
    """Every marker of ``text``, in order. A marker that is not closed, a closer without a
    marker, a marker opened inside another, a value holding '<' or a malformed opener or closer
    is a ``ValueError`` naming ``where`` and the line: a broken marker is never skipped."""

    def line(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    found: list[Marker] = []
    open_: tuple[str, int, int] | None = None  # name, line, end of the opener
    for tok in _MARKER_LIKE.finditer(text):
        opener = OPENER.fullmatch(tok[0])
        if opener is None and tok[0] != CLOSER:
            raise ValueError(
                f"{where}, line {line(tok.start())}: malformed marker {tok[0]!r} (a marker is "
                f"'<!-- ff:Name -->value{CLOSER}', the name letters only)"
            )
        if opener is not None:
            if open_ is not None:
                raise ValueError(
                    f"{where}, line {line(tok.start())}: marker ff:{opener[1]} opens inside "
                    f"ff:{open_[0]} (opened on line {open_[1]} and not closed)"
                )
            open_ = (opener[1], line(tok.start()), tok.end())
            continue
        if open_ is None:
            raise ValueError(f"{where}, line {line(tok.start())}: {CLOSER} closes no marker")
        name, first, begin = open_
        value = text[begin : tok.start()]
        if "<" in value:
            raise ValueError(f"{where}, line {first}: the value of marker ff:{name} holds '<'")
        found.append(Marker(name, value, first, begin, tok.start()))
        open_ = None
    if open_ is not None:
        raise ValueError(f"{where}, line {open_[1]}: marker ff:{open_[0]} is never closed")
    return found


def markers(text: str, where: str = "text") -> list[tuple[str, str]]:
    """(name, quoted text) of every marker in ``text`` (``parse_markers``: broken markers are
    an error)."""
    return [(m.name, m.text) for m in parse_markers(text, where)]


def _unknown(found: list[Marker], entries: Mapping[str, Any], where: str) -> None:
    unknown = [m for m in found if m.name not in entries]
    if unknown:
        more = ", ".join(f"ff:{m.name} (line {m.line})" for m in unknown[1:])
        raise ValueError(
            f"{where}, line {unknown[0].line}: marker ff:{unknown[0].name} names no number in "
            f"numbers.json" + (f"; nor do {more}" if more else "")
        )


def rewrite_markers(
    text: str, entries: Mapping[str, Mapping[str, Any]], where: str = "text"
) -> str:
    """``text`` with every marker's value set to its number's text. Broken markers
    (``parse_markers``) and a name numbers.json does not have are errors naming the line, and
    so is a number's text holding '<' (it would break the marker)."""
    found = parse_markers(text, where)
    _unknown(found, entries, where)
    parts, at = [], 0
    for m in found:
        value = str(entries[m.name]["text"])
        if "<" in value:
            raise ValueError(f"{where}, line {m.line}: the text of number {m.name} holds '<'")
        parts += [text[at : m.start], value]
        at = m.end
    return "".join([*parts, text[at:]])


def marker_mismatches(
    text: str, entries: Mapping[str, Mapping[str, Any]], where: str = "text"
) -> list[str]:
    """One line per marker whose text differs from numbers.json (or names no number); broken
    markers are an error (``parse_markers``)."""
    found = []
    for m in parse_markers(text, where):
        if m.name not in entries:
            found.append(f"{m.name}: not in numbers.json")
        elif m.text != entries[m.name]["text"]:
            found.append(
                f"{m.name}: quoted {m.text!r}, numbers.json has {entries[m.name]['text']!r}"
            )
    return found
