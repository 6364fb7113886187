"""Settings are read once, validated, and a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.db.ledger_keys import LedgerKeys
from bot.ledger_key import EMBEDDED_KEY_ID, SANDBOX_KEY_ID, ledger_keys
from bot.services import check_startup
from bot.settings import SANDBOX_LEDGER_KEY, Settings, SettingsError, load_settings


def test_defaults_are_the_embedded_sandbox() -> None:
    settings = load_settings({}, env_file=None)
    assert settings == Settings(
        redis_snapshot_file="optin.db.redis", ledger_key_file="optin.db.ledger-key"
    )
    assert settings.sandbox and settings.embedded_redis and settings.embedded_database
    assert settings.phone_number_id == "sandbox"
    assert settings.graph_api_url == "https://graph.facebook.com/v25.0"
    assert settings.messages_url == "https://graph.facebook.com/v25.0/sandbox/messages"
    assert settings.send_rate == 80.0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "optin.db.redis"),
        ({"DATABASE_URL": "sqlite+aiosqlite:////var/lib/optin/optin.db"}, None),
        ({"DATABASE_URL": "postgresql+asyncpg://db/optin"}, "optin.redis"),
        ({"EMBEDDED_REDIS_FILE": "off"}, None),
        ({"EMBEDDED_REDIS_FILE": "state.redis"}, "state.redis"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, None),
    ],
)
def test_the_embedded_redis_is_saved_beside_the_sqlite_file(
    env: dict[str, str], expected: str | None
) -> None:
    if env.get("DATABASE_URL", "").startswith("sqlite+aiosqlite:////var/lib/optin"):
        with pytest.raises(SettingsError, match="EMBEDDED_REDIS_FILE"):
            load_settings(env, env_file=None)  # the folder does not exist here
        return
    assert load_settings(env, env_file=None).redis_snapshot_file == expected


def test_every_contract_variable_is_read() -> None:
    env = {
        "WHATSAPP_ACCESS_TOKEN": "tok",
        "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
        "WHATSAPP_APP_SECRET": "sec",
        "WHATSAPP_VERIFY_TOKEN": "ver",
        "GRAPH_API_URL": "http://127.0.0.1:9999/v25.0/",
        "DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "BUSINESS_NAME": "Acme",
        "API_TOKEN": "api",
        "DEFAULT_LOCALE": "ES",
        "SEND_RATE": "250",
    }
    s = load_settings(env, env_file=None)
    assert (s.access_token, s.phone_number_id, s.app_secret, s.verify_token) == (
        "tok",
        "106540352242922",
        "sec",
        "ver",
    )
    assert s.graph_api_url == "http://127.0.0.1:9999/v25.0"
    assert s.database_url == env["DATABASE_URL"] and s.redis_url == env["REDIS_URL"]
    assert (s.business_name, s.api_token, s.default_locale, s.send_rate) == (
        "Acme",
        "api",
        "es",
        250.0,
    )
    assert not s.sandbox


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SEND_RATE", "fast"),
        ("SEND_RATE", "0"),
        ("SEND_RATE", "1001"),
        ("DATABASE_URL", "mysql://x/y"),
        ("DATABASE_URL", "sqlite:///sync.db"),
        ("REDIS_URL", "http://x"),
        ("GRAPH_API_URL", "graph.facebook.com"),
        ("DEFAULT_LOCALE", "e1"),
        ("CATEGORIES_FILE", "/nonexistent/categories.toml"),
        ("KEYWORDS_FILE", "/nonexistent/keywords.toml"),
        ("WHATSAPP_PHONE_NUMBER_ID", "12 34"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({variable: value}, env_file=None)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ")
    assert "\n" not in str(info.value)


def test_env_file_is_read_and_the_real_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BUSINESS_NAME=From File\nSEND_RATE=5\n# comment\n")
    s = load_settings({"SEND_RATE": "7"}, env_file=str(env_file))
    assert s.business_name == "From File"
    assert s.send_rate == 7.0


def test_blank_values_count_as_unset() -> None:
    s = load_settings({"WHATSAPP_ACCESS_TOKEN": "  ", "API_TOKEN": ""}, env_file=None)
    assert s.sandbox and s.api_token is None


def test_agent_tokens_are_name_token_pairs() -> None:
    settings = load_settings(
        {"API_TOKEN": "api", "AGENT_TOKENS": " alice:aaaaaaaaaaaaaaaa1 , bob.k:bbbbbbbbbbbbbbbb2,"},
        env_file=None,
    )
    assert settings.agent_tokens == (
        ("alice", "aaaaaaaaaaaaaaaa1"),
        ("bob.k", "bbbbbbbbbbbbbbbb2"),
    )
    assert load_settings({}, env_file=None).agent_tokens == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("alice", "item 1 is not name:token"),
        ("alice:short", "at least 16 characters"),
        ("alice:has a space in it here", "at least 16 characters"),
        ("admin:aaaaaaaaaaaaaaaa1", "admin is API_TOKEN's"),
        ("alice:aaaaaaaaaaaaaaaa1,Alice:bbbbbbbbbbbbbbbb2", "listed twice"),
        ("alice:aaaaaaaaaaaaaaaa1,bob:aaaaaaaaaaaaaaaa1", "not unique"),
        ("alice:the-api-token-itself", "not unique"),
        ("<b>:aaaaaaaaaaaaaaaa1", "item 1 is not name:token"),
    ],
)
def test_bad_agent_tokens_name_the_variable_not_the_token(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"API_TOKEN": "the-api-token-itself", "AGENT_TOKENS": value}, env_file=None)
    assert error.value.variable == "AGENT_TOKENS"
    assert problem in str(error.value)
    assert "aaaaaaaaaaaaaaaa1" not in str(error.value)


def test_trusted_proxies_are_networks() -> None:
    settings = load_settings({"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.5 ,::1"}, env_file=None)
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.168.1.5/32", "::1/128"]
    with pytest.raises(SettingsError) as error:
        load_settings({"TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, env_file=None)
    assert error.value.variable == "TRUSTED_PROXIES"


def test_the_send_guard_grace_is_seconds_within_bounds() -> None:
    assert load_settings({}, env_file=None).send_guard_grace_seconds == 300.0
    assert (
        load_settings({"SEND_GUARD_GRACE_SECONDS": "20"}, env_file=None).send_guard_grace_seconds
        == 20.0
    )
    for bad in ("soon", "1", "100000"):
        with pytest.raises(SettingsError) as error:
            load_settings({"SEND_GUARD_GRACE_SECONDS": bad}, env_file=None)
        assert error.value.variable == "SEND_GUARD_GRACE_SECONDS"


def test_the_redis_pool_size_and_wait_are_settings_within_bounds() -> None:
    defaults = load_settings({}, env_file=None)
    assert (defaults.redis_max_connections, defaults.redis_pool_timeout) == (100, 10.0)
    chosen = load_settings(
        {"REDIS_MAX_CONNECTIONS": "40", "REDIS_POOL_TIMEOUT": "2.5"}, env_file=None
    )
    assert (chosen.redis_max_connections, chosen.redis_pool_timeout) == (40, 2.5)
    for variable, bad in (
        ("REDIS_MAX_CONNECTIONS", "many"),
        ("REDIS_MAX_CONNECTIONS", "0"),
        ("REDIS_MAX_CONNECTIONS", "2.5"),
        ("REDIS_POOL_TIMEOUT", "forever"),
        ("REDIS_POOL_TIMEOUT", "0"),
    ):
        with pytest.raises(SettingsError) as error:
            load_settings({variable: bad}, env_file=None)
        assert error.value.variable == variable


def test_the_dead_events_kept_is_a_count_within_bounds() -> None:
    """DEAD_EVENTS_KEPT is the retention of `optin:dead`: 100,000 unless set."""
    assert load_settings({}, env_file=None).dead_events_kept == 100_000
    assert load_settings({"DEAD_EVENTS_KEPT": "500"}, env_file=None).dead_events_kept == 500
    for bad in ("many", "0", "2.5", "10000001"):
        with pytest.raises(SettingsError) as error:
            load_settings({"DEAD_EVENTS_KEPT": bad}, env_file=None)
        assert error.value.variable == "DEAD_EVENTS_KEPT"


LEDGER_KEY = "a-ledger-key-of-at-least-32-characters"


def test_the_ledger_key_is_required_once_a_token_is_set() -> None:
    """A production-like configuration (API_TOKEN or WHATSAPP_ACCESS_TOKEN) without LEDGER_KEY
    is refused at startup, naming the variable, instead of signing with a public key."""
    for env in (
        {"API_TOKEN": "an-api-token-0123456789"},
        {
            "WHATSAPP_ACCESS_TOKEN": "t",
            "WHATSAPP_APP_SECRET": "s",
            "PSEUDONYM_KEY": "p" * 32,
        },
    ):
        with pytest.raises(SettingsError, match="LEDGER_KEY: required"):
            check_startup(
                load_settings(env, env_file=None), insecure_no_signature=False, multi_process=False
            )
        keyed = load_settings({**env, "LEDGER_KEY": LEDGER_KEY}, env_file=None)
        check_startup(keyed, insecure_no_signature=False, multi_process=False)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LEDGER_KEY": "short"}, "LEDGER_KEY"),
        ({"LEDGER_KEY_ID": "no spaces"}, "LEDGER_KEY_ID"),
        ({"LEDGER_OLD_KEYS": "just-a-secret-without-an-id-0123456789"}, "item 1"),
        ({"LEDGER_OLD_KEYS": f"1:{LEDGER_KEY}"}, "given twice"),
        ({"LEDGER_OLD_KEYS": "0:short"}, "LEDGER_OLD_KEYS"),
    ],
)
def test_bad_ledger_keys_name_their_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(env, env_file=None)


def test_configured_and_old_ledger_keys_by_id(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql+asyncpg://db/optin",
            "LEDGER_KEY": LEDGER_KEY,
            "LEDGER_KEY_ID": "2025-b",
            "LEDGER_OLD_KEYS": f" 2025-a:{'o' * 32} ,",
        },
        env_file=None,
    )
    keys = ledger_keys(settings)
    assert keys.key_id == "2025-b"
    assert keys.keys["2025-b"] == LEDGER_KEY.encode() and keys.keys["2025-a"] == b"o" * 32


def test_the_embedded_mode_generates_its_key_beside_the_database(tmp_path: Path) -> None:
    settings = load_settings(
        {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"}, env_file=None
    )
    key_file = tmp_path / "optin.db.ledger-key"
    assert settings.ledger_key_file == str(key_file)
    assert ledger_keys(settings, create=False).key_id == SANDBOX_KEY_ID  # verify writes nothing
    assert not key_file.exists()

    first = ledger_keys(settings)
    assert first.key_id == EMBEDDED_KEY_ID and key_file.stat().st_mode & 0o777 == 0o600
    assert ledger_keys(settings) == first  # the same key on every start
    later = ledger_keys(
        load_settings(
            {"DATABASE_URL": settings.database_url, "LEDGER_KEY": LEDGER_KEY}, env_file=None
        )
    )
    assert later.key_id == "1" and later.keys[EMBEDDED_KEY_ID] == first.keys[EMBEDDED_KEY_ID]


def test_other_databases_without_a_key_use_the_public_sandbox_key() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql+asyncpg://db/optin"}, env_file=None)
    assert ledger_keys(settings) == LedgerKeys(
        SANDBOX_KEY_ID, {SANDBOX_KEY_ID: SANDBOX_LEDGER_KEY.encode()}
    )


def test_keywords_file_is_read_once_at_load(tmp_path: Path) -> None:
    path = tmp_path / "keywords.toml"
    path.write_text('[en.opt_out]\nadd = ["ENOUGH"]\n', encoding="utf-8")
    settings = load_settings({"KEYWORDS_FILE": str(path)}, env_file=None)
    path.unlink()
    assert settings.keywords_file == str(path)
    assert settings.keywords_text == '[en.opt_out]\nadd = ["ENOUGH"]\n'
    check_startup(settings, insecure_no_signature=False, multi_process=False)


def test_keywords_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keywords.toml"
    path.write_bytes(b"[en.opt_out]\nadd = ['\xff']\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings({"KEYWORDS_FILE": str(path)}, env_file=None)


def test_a_refused_keywords_file_stops_startup_naming_the_file_each_line_and_why(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keywords.toml"
    path.write_text(
        '[en.opt_out]\nremove = ["QUIT"]\n\n[en.replies]\nclarify_kept = "Nothing changed."\n',
        encoding="utf-8",
    )
    settings = load_settings({"KEYWORDS_FILE": str(path)}, env_file=None)
    with pytest.raises(SettingsError) as info:
        check_startup(settings, insecure_no_signature=False, multi_process=False)
    assert info.value.variable == "KEYWORDS_FILE"
    message = str(info.value)
    assert message.startswith(f"KEYWORDS_FILE: {path}:2: en.opt_out.remove: 'QUIT' is one of")
    assert f"{path}:5: en.replies.clarify_kept: no longer names the business" in message
    assert "\n" not in message
