"""A lint for typed result statements in prose (used by tests/test_prose.py).

Results are reported by generated text: in notebooks a code cell that displays Markdown built by
``ffcore.report.narrative`` from the run's files, in the README the ``<!-- ff:Name -->value
<!-- /ff -->`` markers rewritten from ``figures/numbers.json``. Typed prose explains the method.
This lint reads typed prose (notebook markdown cells, the README with its marker values taken
out, ``figures/README.md``) sentence by sentence and flags a sentence that states

- a percentage (``40 %``), or an AP-like number (``97.7``, ``92.5 / 90.8 / 80.0``) next to AP;
- a direction word (rose, fell, improves, lowers, better, worse, higher, lower, ...) within a
  few words of a metric word (AP, loss, latency, time, NME, ...),

unless the sentence matches an entry of ``ALLOWED``: method sentences, kept few and explicit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"<!--\s*ff:(\w+)\s*-->.*?<!--\s*/ff\s*-->", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
FENCE = re.compile(r"```.*?```", re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")

PERCENT = re.compile(r"\d+(?:\.\d+)?\s?%")
# percentages that are settings of a method, not results: confidence, power and test levels,
# the AP ceiling, the companion's table shrink limit
METHOD_PERCENT = re.compile(
    r"\b(?:95|90|80|5) % (?:t |Student-t |paired )?(?:interval|power|half-width|level|upper bound)"
    r"|\bpass at 5 %|\b100 %|\b90 % (?:or more )?of its natural size|\bat most to 90 %"
)
AP_NUMBER = re.compile(r"\b\d{2}\.\d\b")  # AP in percent: 97.7
TRIPLET = re.compile(r"\b\d+\.\d+\s*/\s*\d+\.\d+\s*/\s*\d+\.\d+\b")  # easy / medium / hard
METRIC = re.compile(
    r"\b(?:AP|mAP|loss(?:es)?|latency|latencies|NME|accuracy|precision|recall|error|time|"
    r"speed|throughput)\b",
    re.I,
)
DIRECTION = re.compile(
    r"\b(?:rose|rises?|rising|risen|fell|falls?|falling|fallen|drops?|dropped|improv\w*|"
    r"lower(?:s|ed|ing)?|rais(?:es|ed|ing)|higher|better|worse|worsen\w*|increas\w*|"
    r"decreas\w*|gains?|gained|degrad\w*|outperform\w*|beats?|hurts?|helps?|"
    r"significantly|no measurable difference|faster|slower)\b",
    re.I,
)
WINDOW = 8  # words between a direction word and a metric word

# Method sentences that use a direction word beside a metric word without reporting a result.
# Each entry is a regular expression searched in the sentence; keep this list short.
ALLOWED: tuple[str, ...] = (
    r"lower \*?by construction",  # the mixup-weighted training loss (phase 3): arithmetic
    r"says \*no measurable difference\* (?:rather than|where)",  # how the latency verdict is made
    r"lower is better",  # the reading of NME
)


@dataclass(frozen=True)
class Finding:
    where: str  # file, and cell for a notebook
    sentence: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}: {self.sentence!r}"


def _clean(text: str) -> str:
    """Typed prose only: marker values, comments, code blocks, code spans, link targets out."""
    text = MARKER.sub(lambda m: f"<{m.group(1)}>", text)
    text = COMMENT.sub(" ", text)
    text = FENCE.sub(" ", text)
    text = CODE_SPAN.sub("<code>", text)
    return LINK_TARGET.sub("]", text)


def sentences(text: str) -> list[str]:
    """Sentences of Markdown: paragraphs and list items split at . ! ? ; or : followed by a
    space (a table row is one sentence per cell)."""
    out = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*]|\d+\.)\s)|\n(?=\s*\|)|\|", _clean(text)):
        block = " ".join(block.split())
        out += [s.strip() for s in re.split(r"(?<=[.!?;:])\s+", block) if s.strip()]
    return out


def _words(sentence: str) -> list[str]:
    return re.findall(r"[\w%*-]+", sentence)


def check_sentence(sentence: str) -> str | None:
    """Why ``sentence`` reads as a typed result (None: it does not, or it is allowed)."""
    if any(re.search(a, sentence, re.I) for a in ALLOWED):
        return None
    if m := PERCENT.search(METHOD_PERCENT.sub("<method>", sentence)):
        return f"typed percentage {m.group(0)!r}"
    if m := TRIPLET.search(sentence):
        return f"typed easy / medium / hard numbers {m.group(0)!r}"
    if re.search(r"\bAP\b", sentence) and (m := AP_NUMBER.search(sentence)):
        return f"typed AP number {m.group(0)!r}"
    words = _words(sentence)
    metric_at = [i for i, w in enumerate(words) if METRIC.fullmatch(w)]
    text = " ".join(words)
    for m in DIRECTION.finditer(text):
        at = len(text[: m.start()].split())
        if any(abs(at - i) <= WINDOW for i in metric_at):
            return f"typed direction {m.group(0)!r} near a metric word"
    return None


def lint_text(text: str, where: str) -> list[Finding]:
    return [
        Finding(where, s, why) for s in sentences(text) if (why := check_sentence(s)) is not None
    ]


def lint_notebook(path: Path) -> list[Finding]:
    """The markdown cells of a notebook (code cells generate their prose from data)."""
    cells = json.loads(Path(path).read_text())["cells"]
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"])
            found += lint_text(source, f"{Path(path).name} cell {i}")
    return found


def lint_markdown(path: Path, skip_sections: tuple[str, ...] = ()) -> list[Finding]:
    """A Markdown file; sections whose heading is in ``skip_sections`` are left out (up to the
    next heading)."""
    text = Path(path).read_text()
    if skip_sections:
        kept, skipping = [], False
        for line in text.splitlines(keepends=True):
            heading = re.match(r"(#+)\s+(.*)", line)
            if heading:
                title = heading.group(2).strip()
                skipping = title in skip_sections
            if not skipping:
                kept.append(line)
        text = "".join(kept)
    return lint_text(text, Path(path).name)
