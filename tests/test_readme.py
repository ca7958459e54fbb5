"""The README's commands are real commands: every `tune-lab ...` line in its code blocks parses
(and in docs/cluster.md's, the cluster walk-through it points to).

A README that drifts from the command line is the first thing a new user trips over (issue 20:
an example passed several pairs to one `--set` when it took one). So each command is read the
way the shell reads it, then given to the real parser and, for a search, to the real search
loader (the `--set` keys and values too), all before Ray or torch would start.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from labspec.registry import LABS, lab_names
from tune_lab.cli import build_parser
from tune_lab.spaces import load_search, search_path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "docs" / "cluster.md"]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def readme_commands() -> list[list[str]]:
    """The argument lists of every `tune-lab` command in a code block, also one quoted inside
    another command (`ray exec cluster.yaml "tune-lab ..."`); `\\` line continuations joined."""
    commands = []
    for block in (b for doc in DOCS for b in FENCE.findall(doc.read_text(encoding="utf-8"))):
        for line in block.replace("\\\n", " ").splitlines():
            if not re.search(r"(^|[\s\"'])tune-lab\s", line):
                continue
            words = shlex.split(line, comments=True)
            for word in words:
                inner = shlex.split(word) if word.startswith("tune-lab ") else []
                if inner:
                    commands.append(inner[1:])
            segment: list[str] = []
            for word in [*words, "&&"]:  # `a && tune-lab ...`: each command of the line
                if word in ("&&", "||", ";", "|"):
                    if segment and segment[0] == "tune-lab":
                        commands.append(segment[1:])
                    segment = []
                else:
                    segment.append(word)
    return commands


COMMANDS = readme_commands()
LABS_BEFORE = dict(LABS)


def test_the_readme_has_commands_to_check():
    """Not vacuous: the README's examples of every kind are found."""
    kinds = {argv[0] for argv in COMMANDS}
    assert len(COMMANDS) >= 40, len(COMMANDS)
    assert {"list", "ui", "report", "resume", "translate", "generate", "mlp", "seq2seq"} <= kinds
    assert ["seq2seq", "--search", "cell", "--set", "optimizer=sgd", "lr=0.01", "batch_size=1", "hidden_size=512",
            "attention=false"] in COMMANDS
    assert any("--address" in argv for argv in COMMANDS)  # the cluster's, quoted inside `ray exec`


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_readme_command_is_accepted(argv, capsys, monkeypatch, request):
    if "--labs" in argv:  # a lab of one's own (examples/own_lab): imported as `tune-lab` does, from the repository root
        from tune_lab import user_labs

        monkeypatch.chdir(REPO)
        added = set(user_labs.load_command_line(argv, environ={})[0].labs) - set(LABS_BEFORE)
        request.addfinalizer(lambda: [LABS.pop(name) for name in added])  # the example's lab is this test's only
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`tune-lab {' '.join(argv)}` is refused by the parser: {capsys.readouterr().err.strip()}")
    if args.command in lab_names() and search_path(args.command, args.search).exists():
        load_search(args.search, args.command, dict(args.overrides))  # keys and values of --set too
