"""One CLI: every subcommand's --help, the shared flags (one name, one meaning, one help text),
defaults shown one way, the deprecated spellings still parsing to what the new ones do (with a
warning), and argparse usage errors as exit code 2."""

from __future__ import annotations

import argparse
import re

import pytest
from onyxserve.repository.schema import STAGES
from onyxserve.server.settings import Settings

from onyxserve.cli import _options, build_parser, main


def _children(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """name -> (its one-line help in the parent's list, its parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            return {name: (helps[name], sub) for name, sub in action.choices.items()}
    return {}


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for name, (summary, sub) in _children(parser).items():
        yield (*path, name), summary, sub
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(build_parser()))
COMMAND_IDS = [" ".join(path) for path, _, _ in COMMANDS]


def _visible_options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS]


def test_every_command_is_listed():
    top = {path[0] for path, _, _ in COMMANDS}
    assert top == {"serve", "export", "datasource", "train", "tune", "loadtest", "evaluate", "registry",
                   "batch-predict", "drift-report", "shadow-report"}
    registry = {path[1] for path, _, _ in COMMANDS if path[0] == "registry" and len(path) == 2}
    assert {"list", "show", "promote", "clear-stage", "rollback", "sync"} <= registry


@pytest.mark.parametrize(("path", "summary", "parser"), COMMANDS, ids=COMMAND_IDS)
def test_help_exits_0_with_a_one_line_description(path, summary, parser, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: onyxserve {' '.join(path)}")
    assert summary and "\n" not in summary and parser.description == summary
    assert " ".join(summary.split()) in " ".join(out.split())
    assert isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class, _options.HelpFormatter)


def test_shared_flags_have_one_help_text_everywhere():
    seen: dict[str, set[str]] = {}
    for _, _, parser in COMMANDS:
        for action in _visible_options(parser):
            for flag in action.option_strings:
                if flag in _options.HELP:
                    expected = _options.HELP[flag]
                    if flag == "--repository" and action.required:
                        expected = _options.REQUIRED_REPOSITORY_HELP
                    assert action.help == expected, (parser.prog, flag)
                    seen.setdefault(flag, set()).add(parser.prog)
    assert set(seen) == set(_options.HELP)  # each is really used
    assert all(len(progs) >= 2 for progs in seen.values()), seen


def _with_flag(flag: str) -> dict[str, argparse.Action]:
    return {p.prog: a for _, _, p in COMMANDS for a in _visible_options(p) if flag in a.option_strings}


def test_one_flag_one_meaning():
    assert all(a.nargs == 0 and a.const is True for a in _with_flag("--json").values())  # a switch, to stdout
    assert set(_with_flag("--json-out")) == {"onyxserve drift-report", "onyxserve loadtest"}
    assert set(_with_flag("--timeout")) == {"onyxserve drift-report", "onyxserve shadow-report"}
    assert set(_with_flag("--workers")) == {"onyxserve serve"}
    assert not _with_flag("--db")
    assert "onyxserve serve" in _with_flag("--registry-db")
    assert all(prog.startswith(("onyxserve registry ", "onyxserve serve")) for prog in _with_flag("--registry-db"))


def test_repository_defaults_to_the_environment_else_models(monkeypatch, tmp_path):
    def parse(*argv: str) -> argparse.Namespace:
        return build_parser().parse_args(list(argv))  # the default is read when the parser is built

    monkeypatch.delenv(_options.REPOSITORY_ENV, raising=False)
    assert parse("registry", "list").repository.as_posix() == "models"
    assert parse("train", "ds.json", "--algorithm", "linear").repository.as_posix() == "models"
    monkeypatch.setenv(_options.REPOSITORY_ENV, str(tmp_path))
    assert parse("registry", "list").repository == tmp_path
    assert parse("tune", "ds.json", "--algorithm", "linear", "--space", "{}").repository == tmp_path
    # serve leaves it to its settings (env over the --config file), so no argparse default
    assert parse("serve").repository is None


def test_defaults_are_shown_one_way():
    formatter = _options.HelpFormatter("onyxserve")
    for _, _, parser in COMMANDS:
        for action in _visible_options(parser):
            text = formatter._expand_help(action)
            assert not re.search(r"\(default [^:]|default \d", text), (parser.prog, text)
            assert text.count("(default") <= 1, (parser.prog, text)
            if action.nargs == 0:  # a switch: no "(default: False)"
                assert "(default: True)" not in text and "(default: False)" not in text, (parser.prog, text)
            elif action.default not in (None, "", [], argparse.SUPPRESS) and not action.required:
                assert "(default" in text, (parser.prog, action.option_strings)


def test_serve_help_states_the_settings_defaults():
    serve = next(p for path, _, p in COMMANDS if path == ("serve",))
    checked = 0
    for action in _visible_options(serve):
        match = re.search(r"\(default: ([^)]+)\)", action.help or "")
        if not match or action.dest not in Settings.model_fields:
            continue
        stated, default = match.group(1), Settings.model_fields[action.dest].default
        if default is None:  # a rule, not a value (--registry-db: REPOSITORY/registry.db)
            continue
        stated = stated.rpartition("else ")[2].removeprefix("./")  # --repository: $ONYXSERVE_REPOSITORY, else
        if stated.endswith(" MiB"):
            assert int(stated.removesuffix(" MiB")) << 20 == default, action.dest
        else:
            assert stated == (f"{default:g}" if isinstance(default, float) else str(default)), action.dest
        checked += 1
    assert checked >= 10


def test_registry_stages_come_from_the_schema():
    parsers = {path: p for path, _, p in COMMANDS}
    (stage,) = [a for a in parsers["registry", "promote"]._actions if "--stage" in a.option_strings]
    assert tuple(stage.choices) == STAGES
    (positional,) = [a for a in parsers["registry", "clear-stage"]._actions if a.dest == "stage"]
    assert tuple(positional.choices) == STAGES


def _spelled(argv: str, old: str, new: str) -> tuple[list[str], list[str], str, str]:
    """(argv with the old flag where FLAG is, argv with the new one, old, new)."""
    words = argv.split()
    bare = lambda flag: flag.removesuffix(" PATH")  # noqa: E731 - "--json PATH" is spelled --json
    return ([w.replace("FLAG", bare(old)) for w in words], [w.replace("FLAG", bare(new)) for w in words], old, new)


DEPRECATED = [
    _spelled("registry list FLAG x.db", "--db", "--registry-db"),
    _spelled("registry promote m 1 FLAG=x.db", "--db", "--registry-db"),
    _spelled("tune ds.json --algorithm linear --space {} FLAG 5", "--timeout", "--time-budget"),
    _spelled("batch-predict v in.csv --out o.csv FLAG 3", "--workers", "--dask-workers"),
    _spelled("loadtest h:1 --model m FLAG 250ms", "--timeout", "--deadline"),
    _spelled("loadtest h:1 --model m FLAG out.json", "--json PATH", "--json-out PATH"),
    _spelled("loadtest FLAG runs/a unix:///tmp/s.sock --model m", "--json PATH", "--json-out PATH"),
    _spelled("drift-report FLAG drift.json fraud", "--json PATH", "--json-out PATH"),
    _spelled("drift-report fraud FLAG=report.txt", "--json PATH", "--json-out PATH"),
]


@pytest.mark.parametrize(("old", "new", "old_flag", "new_flag"), DEPRECATED, ids=[" ".join(d[0]) for d in DEPRECATED])
def test_a_deprecated_spelling_parses_as_the_new_one_and_warns(old, new, old_flag, new_flag, capsys):
    expected = vars(build_parser().parse_args(new))
    assert capsys.readouterr().err == ""  # the new spelling is quiet
    assert vars(build_parser().parse_args(old)) == expected
    (line,) = capsys.readouterr().err.splitlines()
    assert f"DeprecationWarning: {old_flag} is deprecated, use {new_flag} " in line


@pytest.mark.parametrize(
    "argv",
    [
        ["drift-report", "--json", "fraud"],  # a model name is not a file: --json is the switch
        ["loadtest", "--json", "127.0.0.1:8001", "--model", "m"],
        ["loadtest", "--json", "unix:///tmp/s.sock", "--model", "m"],
    ],
)
def test_json_before_a_positional_stays_the_switch(argv, capsys):
    args = build_parser().parse_args(argv)
    assert args.json is True and args.json_out is None
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["registry"],  # no action
        ["registry", "promote", "m", "1", "--stage", "prod"],  # not a stage
        ["tune", "ds.json", "--algorithm", "linear"],  # --space is required
        ["loadtest", "h:1", "--model", "m", "--deadline", "soon"],
        ["nope"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: onyxserve" in err and "Traceback" not in err
