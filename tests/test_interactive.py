"""What a person at the keyboard meets: make lab, make reproduce FORCE=1, CLI help."""

from __future__ import annotations

import re

import pytest

from ffcore.cli import build_parser
from ffcore.paths import REPO_ROOT


def test_make_lab_opens_at_the_root_also_as_root_and_reproduce_can_force() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    lab = makefile[makefile.index("\nlab:") :].split("\n\n")[0]
    assert "--notebook-dir=." in lab and "$(filter 0,$(shell id -u)),--allow-root" in lab
    reproduce = makefile[makefile.index("\nreproduce:") :].split("\n\n")[0]
    assert "$(if $(FORCE),--force)" in reproduce


@pytest.mark.parametrize("command", ["reproduce", "train", "detect", "wider-eval"])
def test_every_option_shows_its_default(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    text = sub.format_help().split("options:", 1)[1]
    for action in sub._actions:
        # None and False mean "not given" / "off": nothing to show (each default once: test_cli_fast)
        if action.option_strings and action.dest != "help" and action.default not in (None, False):
            option = action.option_strings[-1]
            block = text[text.index(option) :]
            nxt = re.search(r"\n  -", block[2:])
            assert "default" in (block[: nxt.start() + 2] if nxt else block), option
