"""`bot.redis_keys` lists every Redis key: the code builds keys only through it, and the
README's table is the module's."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from bot import redis_keys
from bot.redis_keys import KEYS, Personal, key_for, markdown_table

ROOT = Path(__file__).resolve().parents[2]
#: Strings that start like a key but are not Redis keys, and why.
NOT_REDIS_KEYS = {
    "optin:yes": "flows.replies: the id of a quick-reply button, sent to Meta",
    "optin:no": "flows.replies: the id of a quick-reply button, sent to Meta",
    "optin:choose": "flows.replies: the id of a quick-reply button, sent to Meta",
    "optin:pick:": "flows.replies: the prefix of a list row's id, sent to Meta",
    "optin:pick": "flows.replies: the prefix of a list row's id, sent to Meta",
}
_KEY_LITERAL = re.compile(r"(?<![\w:.-])optin:")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of docstring nodes (they describe keys; they do not build them)."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
        ):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def key_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in `path` (f-string parts included) that starts
    an `optin:` key, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _KEY_LITERAL.search(node.value)
    ]


def test_no_code_outside_the_module_spells_a_redis_key() -> None:
    """Keys are built through `bot.redis_keys`, so its list is the whole truth."""
    module = ROOT / "bot" / "redis_keys.py"
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for package in ("bot", "flows")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != module
        for line, text in key_literals(path)
        if text not in NOT_REDIS_KEYS
    ]
    assert offenders == [], "build these keys through bot.redis_keys:\n" + "\n".join(offenders)


def test_the_scan_finds_keys_in_strings_and_f_strings(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        '"""Docstring naming optin:out is fine."""\n'
        'A = "optin:window:1"\n'
        'def f(x):\n    """optin:in:{x} in a docstring."""\n    return f"optin:in:{x}"\n'
        'B = "api:optin:key"\n',
        encoding="utf-8",
    )
    assert key_literals(source) == [(2, "optin:window:1"), (5, "optin:in:")]


@pytest.mark.parametrize("page", ["README.md", "docs/reference.md"])
def test_the_documented_table_is_the_modules(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    match = re.search(
        r"^## Redis keys\n.*?<!-- redis-keys:start -->\n(.*?)<!-- redis-keys:end -->",
        text,
        flags=re.S | re.M,
    )
    assert match, f"{page} has no generated table in a 'Redis keys' section"
    assert match.group(1) == markdown_table(), "regenerate it: python -m bot.redis_keys"


def test_every_key_is_described() -> None:
    patterns = [key.pattern for key in KEYS]
    assert len(set(patterns)) == len(patterns)
    for key in KEYS:
        assert key.pattern.startswith("optin:"), key
        assert key.kind in {"string", "hash", "stream", "zset", "set"}, key
        assert key.lifetime and key.holds, key
        importlib.import_module(key.owner)
        # A key with a customer's data says what erasure does to it; the others have nothing
        # to erase.
        assert bool(key.erasure) == (key.personal is Personal.CUSTOMER), key


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("optin:in:3", redis_keys.INBOUND),
        ("optin:lease:in:alive", redis_keys.INBOUND_LEASES_ALIVE),
        ("optin:lease:in:7", redis_keys.INBOUND_LEASES),
        ("optin:idem:messages:abc:answer", redis_keys.IDEMPOTENT_ANSWER),
        ("optin:idem:contact:4", redis_keys.IDEMPOTENT_ANSWERS_OF_CONTACT),
        ("optin:campaigns:throttle:123:debounce", redis_keys.CAMPAIGN_THROTTLE_DEBOUNCE),
        ("optin:crm:dead", redis_keys.CRM_DEAD_LETTERS),
        ("optin:crm:log:contact:9", redis_keys.CRM_LOG_CONTACT_INDEX),
        ("optin:dead", redis_keys.DEAD_LETTERS),
    ],
)
def test_a_concrete_key_is_found_in_its_family(name: str, family: redis_keys.RedisKey) -> None:
    assert key_for(name) == family


def test_keys_are_built_from_their_patterns() -> None:
    assert redis_keys.WINDOW.format(contact_id=12) == "optin:window:12"
    assert redis_keys.OUTBOUND.name == "optin:out"
    assert redis_keys.INBOUND_LEASES.prefix == "optin:lease:in"
    with pytest.raises(ValueError):
        redis_keys.WINDOW.format(shard=1)
    with pytest.raises(ValueError):
        _ = redis_keys.WINDOW.name


_MENTION = re.compile(r"(?<![\w:.-])optin:[\w:{}<>*.\-]*[\w}>*]")


def test_every_key_a_comment_or_docstring_names_is_listed() -> None:
    """Comments and docstrings name keys too (`optin:queued:<message id>`, a lease prefix):
    each must be a listed family, so prose cannot describe a key that no longer exists."""
    unknown = []
    for package in ("bot", "flows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "redis_keys.py" and path.parent.name == "bot":
                continue
            for mention in _MENTION.findall(path.read_text(encoding="utf-8")):
                if mention in NOT_REDIS_KEYS:
                    continue
                concrete = re.sub(r"<[^>]*>|\{[^}]*\}|\*", "x", mention)
                if key_for(concrete) is None and not any(k.prefix == mention for k in KEYS):
                    unknown.append(f"{path.relative_to(ROOT)}: {mention}")
    assert unknown == [], "\n".join(unknown)
