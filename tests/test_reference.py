"""docs/reference.md against the code: a command, option, setting, route, metric, keyword or
Redis key that exists in the code but not on that page (or the other way round) fails here, so
the reference cannot drift from what the service does."""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import create_app
from bot.cli import _parser
from bot.metrics import Metrics
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", REFERENCE, re.M | re.S)
    assert match, f"docs/reference.md has no '## {title}' section"
    return match.group(1)


def table_keys(text: str) -> set[str]:
    """The first cell of every table row, without its backticks."""
    return {
        m.group(1) for m in re.finditer(r"^\| `([^`]+)`", text, re.M) if not m.group(1).isspace()
    }


def settings_in_code() -> set[str]:
    """Every variable name `bot/settings.py` reads or names in an error (the loader is the only
    reader of the environment)."""
    source = (ROOT / "bot" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{4,})"', source))


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, list[str]]]:
    """(`optin-bot …` command path, its visible options and positionals), depth first."""
    options: list[str] = []
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            children.extend(action.choices.items())
        elif action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        elif action.option_strings:
            options.append(action.option_strings[-1])
        else:
            options.append(action.dest)
    yield " ".join(("optin-bot", *path)), options
    for name, child in children:
        yield from commands(child, (*path, name))


def routes() -> set[str]:
    app = create_app(Settings())
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if isinstance(route.resource, web.StaticResource):
            path += "/{path}"
        found.add(f"{route.method} {path}")
    return found


def test_every_command_and_option_is_in_the_reference() -> None:
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `(optin-bot[^`]*)` \|.*$", REFERENCE, re.M)
    }
    listed = set()
    for command, options in commands(_parser()):
        assert command in rows, f"docs/reference.md lacks a row for `{command}`"
        listed.add(command)
        for option in options:
            assert f"`{option}`" in rows[command], f"`{command}` row lacks `{option}`"
    assert set(rows) == listed, f"rows for commands that do not exist: {set(rows) - listed}"


def test_every_setting_is_in_the_reference_and_no_other() -> None:
    documented = table_keys(section("Settings"))
    assert documented == settings_in_code(), (
        f"missing: {settings_in_code() - documented}; not read: {documented - settings_in_code()}"
    )


def test_every_route_is_in_the_reference_and_no_other() -> None:
    documented = table_keys(section("HTTP endpoints"))
    assert documented == routes(), (
        f"missing: {routes() - documented}; no such route: {documented - routes()}"
    )


def test_every_metric_is_in_the_reference() -> None:
    exposed = set()
    for family in Metrics().registry.collect():
        exposed.add(family.name + ("_total" if family.type == "counter" else ""))
    documented = table_keys(section("Metrics"))
    assert exposed <= documented, f"missing: {exposed - documented}"


@pytest.mark.parametrize("path", sorted((ROOT / "locales").glob("*.toml")), ids=lambda p: p.stem)
def test_every_locale_keyword_is_in_the_reference(path: Path) -> None:
    keywords = tomllib.loads(path.read_text(encoding="utf-8"))["keywords"]
    row = next(
        (line for line in section("Keywords").splitlines() if line.startswith(f"| `{path.stem}`")),
        None,
    )
    assert row is not None, f"no keyword row for {path.stem}"
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    for column, kind in enumerate(("stop_all", "start_all", "yes", "no", "help", "preferences"), 1):
        words = {w.strip() for w in cells[column].split(",") if w.strip()}
        assert words == set(keywords.get(kind, [])), f"{path.stem} {kind}: {cells[column]}"
