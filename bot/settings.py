"""Settings: read once from the environment (and `.env`), validated at startup.

Every variable of the public contract lives here and nowhere else: the rest of the code receives a
`Settings` object from the composition root, so a typo in an environment variable fails at startup
with one line naming it, never halfway through a conversation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from bot.clientaddress import Network, parse_networks

DEFAULT_GRAPH_API_URL = "https://graph.facebook.com/v25.0"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///optin.db"
DEFAULT_REDIS_URL = "memory://"
DEFAULT_REDIS_MAX_CONNECTIONS = 100
MAX_REDIS_MAX_CONNECTIONS = 10_000
DEFAULT_REDIS_POOL_TIMEOUT_SECONDS = 10.0
MAX_SEND_RATE = 1000.0
DEFAULT_DEAD_EVENTS_KEPT = 100_000
MAX_DEAD_EVENTS_KEPT = 10_000_000
#: The key of erased contacts' pseudonyms in sandbox mode only: public, so it protects nothing.
#: A live service must set its own PSEUDONYM_KEY (and never change it: see docs/erasure.md).
SANDBOX_PSEUDONYM_KEY = "optin-bot sandbox pseudonym key, not secret"
MIN_PSEUDONYM_KEY_LENGTH = 16
#: The ledger's key where none is configured and no file can hold a generated one: public, so it
#: protects nothing (see `bot.ledger_key`).
SANDBOX_LEDGER_KEY = "optin-bot sandbox ledger key, not secret"
MIN_LEDGER_KEY_LENGTH = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


MIN_AGENT_TOKEN_LENGTH = 16
_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SettingsError(ValueError):
    """A configuration variable has a value the service cannot run with."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def _keywords_text(path: str) -> str:
    """The content of `KEYWORDS_FILE` (checked against the locale files at startup)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError("KEYWORDS_FILE", f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise SettingsError("KEYWORDS_FILE", f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise SettingsError("KEYWORDS_FILE", f"{path}: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one optin-bot process."""

    access_token: str | None = None
    phone_number_id: str = "sandbox"
    app_secret: str | None = None
    verify_token: str | None = None
    graph_api_url: str = DEFAULT_GRAPH_API_URL
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    #: `REDIS_MAX_CONNECTIONS`: the size of this process's Redis connection pool; a command
    #: finding every connection busy waits for one (`bot.redisconn`).
    redis_max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS
    #: `REDIS_POOL_TIMEOUT`: seconds a command waits for a free connection before it fails.
    redis_pool_timeout: float = DEFAULT_REDIS_POOL_TIMEOUT_SECONDS
    #: `REDIS_CLIENT_NAME`: the name every Redis connection of the process gives itself
    #: (CLIENT SETNAME), to find them in `CLIENT LIST`; letters, digits, `-`, `_`, `.`.
    redis_client_name: str | None = "optin-bot"
    business_name: str = "Example Business"
    api_token: str | None = None
    #: (agent name, token) pairs of `AGENT_TOKENS`: each agent logs in to the console with their
    #: own token, so the ledger and the audit log name who did what.
    agent_tokens: tuple[tuple[str, str], ...] = ()
    default_locale: str = "en"
    categories_file: str | None = None
    #: `KEYWORDS_FILE`: the business's own keywords and reply texts over the locale files
    #: (`bot.keyword_overrides`); `keywords_text` is its content, read once here.
    keywords_file: str | None = None
    keywords_text: str | None = None
    send_rate: float = 80.0
    #: `SEND_GUARD_GRACE_SECONDS`: how long a template whose send was interrupted waits for
    #: Meta's status before it is judged never sent and sent again (`bot.send_guard`).
    send_guard_grace_seconds: float = 300.0
    #: `HEALTH_STALL_SECONDS`: how long a task may handle nothing while its queue holds
    #: entries before `/healthz` and `optin-bot health` call it stalled (`bot.heartbeats`).
    health_stall_seconds: float = 60.0
    optin_expiry_hours: float = 48.0
    clarification_timeout_hours: float = 24.0
    clarification_silence: str = "stop_all"
    reconsent_deadline_policy: str = "lapse"
    policy_version: str = "1"
    optin_template: str | None = None
    reconsent_template: str | None = None
    template_languages: tuple[tuple[str, str], ...] = ()
    #: `WHATSAPP_BUSINESS_ACCOUNT_ID`: the account whose template list tells each template's
    #: category and whether it carries an opt-out (`bot.message_templates`); unset with a token,
    #: templates go out unchecked, with a warning.
    business_account_id: str | None = None
    generic_optin_policy: str = "refuse"
    business_webhook_url: str | None = None
    business_webhook_secret: str | None = None
    quality_guard_optout_rate: float = 0.02
    pseudonym_key: str | None = None
    #: `LEDGER_KEY`: the secret the consent ledger's rows and heads are signed with (HMAC), so
    #: rows cannot be rewritten, nor a head moved back, without it. Required with a token.
    ledger_key: str | None = None
    #: `LEDGER_KEY_ID`: the id new rows name for `LEDGER_KEY`; a new id starts a rotation.
    ledger_key_id: str = "1"
    #: `LEDGER_OLD_KEYS`: (key id, key) pairs of earlier keys, needed to verify older rows.
    ledger_old_keys: tuple[tuple[str, str], ...] = ()
    #: Where the embedded mode keeps the ledger key it generated when `LEDGER_KEY` is unset:
    #: beside the SQLite file (`optin.db` -> `optin.db.ledger-key`); None for other databases.
    ledger_key_file: str | None = None
    #: `TRUSTED_PROXIES`: load balancers whose `X-Forwarded-For` names the real client.
    trusted_proxies: tuple[Network, ...] = ()
    #: `PROMETHEUS_MULTIPROC_DIR`: where the processes of one service keep their metric values
    #: (prometheus-client's multiprocess mode), so that `/metrics` of any of them reports them
    #: all. `serve --workers N` sets it for its children; set it yourself only to run several
    #: processes of one machine as one service.
    metrics_dir: str | None = None
    #: `DEAD_EVENTS_KEPT`: how many of the newest dead inbound events `optin:dead` keeps for
    #: `optin-bot dead replay`; each older one trimmed is logged at ERROR and counted.
    dead_events_kept: int = DEFAULT_DEAD_EVENTS_KEPT
    #: `EMBEDDED_REDIS_FILE`: where the embedded Redis (`memory://`) is saved so that windows,
    #: timers, queues and de-duplication keys survive a restart (`bot.redis_snapshot`). Set by
    #: `load_settings` beside the SQLite file; None keeps the store in memory only.
    redis_snapshot_file: str | None = None

    def template_language(self, locale: str) -> str:
        """The template language code for a contact's locale (`TEMPLATE_LANGUAGES`, else the
        locale code itself)."""
        return dict(self.template_languages).get(locale, locale)

    @property
    def pseudonym_secret(self) -> bytes:
        """The key of erased contacts' pseudonyms: PSEUDONYM_KEY, or the public sandbox key."""
        return (self.pseudonym_key or SANDBOX_PSEUDONYM_KEY).encode("utf-8")

    @property
    def own_number(self) -> str | None:
        """The number id webhooks must be for; None (every number) while none is configured
        (`WHATSAPP_PHONE_NUMBER_ID` unset: the sandbox's placeholder)."""
        return None if self.phone_number_id == "sandbox" else self.phone_number_id

    @property
    def sandbox(self) -> bool:
        """No access token: nothing leaves the machine, outbound messages are kept locally."""
        return self.access_token is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url.startswith("memory://")

    @property
    def embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def messages_url(self) -> str:
        return f"{self.graph_api_url}/{self.phone_number_id}/messages"


def _client_name(value: str | None) -> str | None:
    """`REDIS_CLIENT_NAME`: unset names connections `optin-bot`; `off` leaves them unnamed."""
    if value is None:
        return "optin-bot"
    if value.lower() == "off":
        return None
    if not value.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SettingsError("REDIS_CLIENT_NAME", "letters, digits, '-', '_' and '.' only")
    return value


def _redis_snapshot_file(value: str | None, redis_url: str, database_url: str) -> str | None:
    """`EMBEDDED_REDIS_FILE`: a path, `off`, or unset for the default: beside the SQLite file
    (`optin.db` -> `optin.db.redis`), else `optin.redis` in the working directory."""
    if not redis_url.startswith(DEFAULT_REDIS_URL):
        return None
    if value is not None and value.lower() == "off":
        return None
    if value is None:
        sqlite = database_url.split(":///", 1)
        if database_url.startswith("sqlite") and len(sqlite) == 2 and sqlite[1] != ":memory:":
            value = sqlite[1].split("?", 1)[0] + ".redis"
        else:
            value = "optin.redis"
    folder = Path(value).resolve().parent
    if not folder.is_dir():
        raise SettingsError("EMBEDDED_REDIS_FILE", f"no such folder: {folder}")
    return value


def _ledger_key_file(database_url: str) -> str | None:
    sqlite = database_url.split(":///", 1)
    if database_url.startswith("sqlite") and len(sqlite) == 2 and sqlite[1] != ":memory:":
        return sqlite[1].split("?", 1)[0] + ".ledger-key"
    return None


def _ledger_key(text: str | None, name: str = "LEDGER_KEY") -> str | None:
    if text is not None and (len(text) < MIN_LEDGER_KEY_LENGTH or any(c.isspace() for c in text)):
        raise SettingsError(
            name, f"at least {MIN_LEDGER_KEY_LENGTH} characters of random secret, no spaces"
        )
    return text


def _key_id(text: str, name: str) -> str:
    if not _KEY_ID.match(text):
        raise SettingsError(name, "a key id: 1 to 32 letters, digits, . _ -")
    return text


def _ledger_old_keys(text: str | None, key_id: str) -> tuple[tuple[str, str], ...]:
    """`LEDGER_OLD_KEYS` ("1:secret1,2:secret2"): earlier keys by id, none under `key_id`."""
    pairs: list[tuple[str, str]] = []
    for position, item in enumerate((text or "").split(","), start=1):
        if not item.strip():
            continue
        name, sep, key = (part.strip() for part in item.partition(":"))
        if not sep or not _KEY_ID.match(name):
            # The value is not echoed: it may be a key typed without its id.
            raise SettingsError("LEDGER_OLD_KEYS", f"item {position} is not key_id:key")
        _ledger_key(key, "LEDGER_OLD_KEYS")
        if name == key_id or any(name == other for other, _ in pairs):
            raise SettingsError("LEDGER_OLD_KEYS", f"key id {name} is given twice")
        pairs.append((name, key))
    return tuple(pairs)


def _metrics_dir(value: str | None) -> str | None:
    if value is not None and not Path(value).is_dir():
        raise SettingsError("PROMETHEUS_MULTIPROC_DIR", f"no such directory: {value}")
    return value


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise SettingsError(name, f"expected a URL starting with one of {', '.join(schemes)}")
    return value.rstrip("/") if name == "GRAPH_API_URL" else value


def _trusted_proxies(text: str | None) -> tuple[Network, ...]:
    try:
        return parse_networks(text or "")
    except ValueError as exc:
        raise SettingsError(
            "TRUSTED_PROXIES", f"addresses or CIDR networks, comma-separated ({exc})"
        ) from exc


def _agent_tokens(text: str | None, api_token: str | None) -> tuple[tuple[str, str], ...]:
    """`AGENT_TOKENS` ("alice:token1,bob:token2"): unique names and tokens, long tokens.

    "admin" is the name `API_TOKEN` logs in under, so no agent may take it.
    """
    pairs: list[tuple[str, str]] = []
    for position, item in enumerate((text or "").split(","), start=1):
        if not item.strip():
            continue
        name, sep, token = (part.strip() for part in item.partition(":"))
        if not sep or not _AGENT_NAME.match(name):
            # The value is not echoed: it may be a token typed without its name.
            raise SettingsError(
                "AGENT_TOKENS",
                f"item {position} is not name:token (name: letters, digits, . _ -)",
            )
        if name.lower() == "admin":
            raise SettingsError("AGENT_TOKENS", "the name admin is API_TOKEN's; pick another")
        if len(token) < MIN_AGENT_TOKEN_LENGTH or any(ch.isspace() for ch in token):
            raise SettingsError(
                "AGENT_TOKENS",
                f"the token of {name} must be at least {MIN_AGENT_TOKEN_LENGTH} characters, "
                "without spaces",
            )
        if any(name.lower() == other.lower() for other, _ in pairs):
            raise SettingsError("AGENT_TOKENS", f"{name} is listed twice")
        if token == api_token or any(token == other for _, other in pairs):
            raise SettingsError("AGENT_TOKENS", f"the token of {name} is not unique")
        pairs.append((name, token))
    return tuple(pairs)


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | None = ".env"
) -> Settings:
    """Build `Settings` from `environ` (default: the process environment) over `env_file`.

    The real environment wins over `.env`, as python-dotenv's convention goes. A missing `.env` is
    fine; an unreadable value raises `SettingsError` naming the variable.
    """
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        return _clean(merged.get(name))

    phone_number_id = get("WHATSAPP_PHONE_NUMBER_ID") or "sandbox"
    if not phone_number_id.replace("_", "").isalnum():
        raise SettingsError("WHATSAPP_PHONE_NUMBER_ID", "must be the number's id (letters/digits)")

    rate_text = get("SEND_RATE") or "80"
    try:
        send_rate = float(rate_text)
    except ValueError:
        raise SettingsError("SEND_RATE", f"not a number: {rate_text!r}") from None
    if not 0 < send_rate <= MAX_SEND_RATE:
        raise SettingsError(
            "SEND_RATE", f"must be > 0 and <= {MAX_SEND_RATE:g} messages per second"
        )

    pool_text = get("REDIS_MAX_CONNECTIONS") or str(DEFAULT_REDIS_MAX_CONNECTIONS)
    try:
        redis_max_connections = int(pool_text)
    except ValueError:
        raise SettingsError("REDIS_MAX_CONNECTIONS", f"not a whole number: {pool_text!r}") from None
    if not 1 <= redis_max_connections <= MAX_REDIS_MAX_CONNECTIONS:
        raise SettingsError(
            "REDIS_MAX_CONNECTIONS", f"must be 1 to {MAX_REDIS_MAX_CONNECTIONS} connections"
        )

    kept_text = get("DEAD_EVENTS_KEPT") or str(DEFAULT_DEAD_EVENTS_KEPT)
    try:
        dead_events_kept = int(kept_text)
    except ValueError:
        raise SettingsError("DEAD_EVENTS_KEPT", f"not a whole number: {kept_text!r}") from None
    if not 1 <= dead_events_kept <= MAX_DEAD_EVENTS_KEPT:
        raise SettingsError("DEAD_EVENTS_KEPT", f"must be 1 to {MAX_DEAD_EVENTS_KEPT} events")

    locale = (get("DEFAULT_LOCALE") or "en").lower()
    if not (2 <= len(locale) <= 8 and locale.replace("-", "").replace("_", "").isalpha()):
        raise SettingsError("DEFAULT_LOCALE", f"not a language code: {locale!r}")

    categories_file = get("CATEGORIES_FILE")
    if categories_file is not None and not Path(categories_file).is_file():
        raise SettingsError("CATEGORIES_FILE", f"no such file: {categories_file}")

    keywords_file = get("KEYWORDS_FILE")
    keywords_text = None if keywords_file is None else _keywords_text(keywords_file)

    def hours(name: str, default: str) -> float:
        text = get(name) or default
        try:
            value = float(text)
        except ValueError:
            raise SettingsError(name, f"not a number of hours: {text!r}") from None
        if not 0 < value <= 24 * 365:
            raise SettingsError(name, "must be more than 0 and at most a year, in hours")
        return value

    def seconds(name: str, default: str, *, low: float, high: float) -> float:
        text = get(name) or default
        try:
            value = float(text)
        except ValueError:
            raise SettingsError(name, f"not a number of seconds: {text!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"must be {low:g} to {high:g} seconds")
        return value

    def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (get(name) or default).lower()
        if value not in allowed:
            raise SettingsError(name, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    languages: list[tuple[str, str]] = []
    for item in (get("TEMPLATE_LANGUAGES") or "").split(","):
        if not item.strip():
            continue
        code, sep, language = item.partition("=")
        if not sep or not code.strip() or not language.strip():
            raise SettingsError(
                "TEMPLATE_LANGUAGES", f"expected locale=language pairs, got {item!r}"
            )
        languages.append((code.strip().lower(), language.strip()))

    webhook_url = get("BUSINESS_WEBHOOK_URL")
    if webhook_url is not None:
        _url("BUSINESS_WEBHOOK_URL", webhook_url, ("http", "https"))
        if get("BUSINESS_WEBHOOK_SECRET") is None:
            raise SettingsError(
                "BUSINESS_WEBHOOK_SECRET",
                "required with BUSINESS_WEBHOOK_URL (it signs each event)",
            )
    guard_text = get("QUALITY_GUARD_OPTOUT_RATE") or "0.02"
    try:
        guard_rate = float(guard_text)
    except ValueError:
        raise SettingsError("QUALITY_GUARD_OPTOUT_RATE", f"not a number: {guard_text!r}") from None
    if not 0 < guard_rate <= 1:
        raise SettingsError("QUALITY_GUARD_OPTOUT_RATE", "a fraction: more than 0, at most 1")
    pseudonym_key = get("PSEUDONYM_KEY")
    if pseudonym_key is not None and len(pseudonym_key) < MIN_PSEUDONYM_KEY_LENGTH:
        raise SettingsError(
            "PSEUDONYM_KEY", f"at least {MIN_PSEUDONYM_KEY_LENGTH} characters of random secret"
        )

    ledger_key_id = _key_id(get("LEDGER_KEY_ID") or "1", "LEDGER_KEY_ID")

    business_account_id = get("WHATSAPP_BUSINESS_ACCOUNT_ID")
    if business_account_id is not None and not business_account_id.isdigit():
        raise SettingsError(
            "WHATSAPP_BUSINESS_ACCOUNT_ID", "must be the account's numeric id (digits only)"
        )

    return Settings(
        access_token=get("WHATSAPP_ACCESS_TOKEN"),
        phone_number_id=phone_number_id,
        app_secret=get("WHATSAPP_APP_SECRET"),
        verify_token=get("WHATSAPP_VERIFY_TOKEN"),
        graph_api_url=_url(
            "GRAPH_API_URL", get("GRAPH_API_URL") or DEFAULT_GRAPH_API_URL, ("http", "https")
        ),
        database_url=_url(
            "DATABASE_URL",
            get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            ("sqlite+aiosqlite", "postgresql+asyncpg"),
        ),
        redis_url=_url(
            "REDIS_URL",
            get("REDIS_URL") or DEFAULT_REDIS_URL,
            ("redis", "rediss", "unix", "memory"),
        ),
        redis_max_connections=redis_max_connections,
        redis_pool_timeout=seconds(
            "REDIS_POOL_TIMEOUT", str(DEFAULT_REDIS_POOL_TIMEOUT_SECONDS), low=0.1, high=300
        ),
        redis_client_name=_client_name(get("REDIS_CLIENT_NAME")),
        business_name=get("BUSINESS_NAME") or "Example Business",
        api_token=get("API_TOKEN"),
        agent_tokens=_agent_tokens(get("AGENT_TOKENS"), get("API_TOKEN")),
        default_locale=locale,
        categories_file=categories_file,
        keywords_file=keywords_file,
        keywords_text=keywords_text,
        send_rate=send_rate,
        dead_events_kept=dead_events_kept,
        send_guard_grace_seconds=seconds("SEND_GUARD_GRACE_SECONDS", "300", low=5, high=86_400),
        health_stall_seconds=seconds("HEALTH_STALL_SECONDS", "60", low=5, high=86_400),
        optin_expiry_hours=hours("OPTIN_EXPIRY_HOURS", "48"),
        clarification_timeout_hours=hours("CLARIFICATION_TIMEOUT_HOURS", "24"),
        clarification_silence=choice("CLARIFICATION_SILENCE", "stop_all", ("stop_all", "keep")),
        reconsent_deadline_policy=choice("RECONSENT_DEADLINE_POLICY", "lapse", ("lapse", "keep")),
        policy_version=get("POLICY_VERSION") or "1",
        optin_template=get("OPTIN_TEMPLATE"),
        reconsent_template=get("RECONSENT_TEMPLATE"),
        template_languages=tuple(languages),
        business_account_id=business_account_id,
        generic_optin_policy=choice("GENERIC_OPTIN_POLICY", "refuse", ("refuse", "accept")),
        business_webhook_url=webhook_url,
        business_webhook_secret=get("BUSINESS_WEBHOOK_SECRET"),
        quality_guard_optout_rate=guard_rate,
        pseudonym_key=pseudonym_key,
        ledger_key=_ledger_key(get("LEDGER_KEY")),
        ledger_key_id=ledger_key_id,
        ledger_old_keys=_ledger_old_keys(get("LEDGER_OLD_KEYS"), ledger_key_id),
        ledger_key_file=_ledger_key_file(get("DATABASE_URL") or DEFAULT_DATABASE_URL),
        trusted_proxies=_trusted_proxies(get("TRUSTED_PROXIES")),
        # From the real environment only, never `.env`: prometheus-client reads this variable
        # itself when it is imported, so a value it cannot see would make `/metrics` empty.
        redis_snapshot_file=_redis_snapshot_file(
            get("EMBEDDED_REDIS_FILE"),
            get("REDIS_URL") or DEFAULT_REDIS_URL,
            get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        ),
        metrics_dir=_metrics_dir(
            _clean((os.environ if environ is None else environ).get("PROMETHEUS_MULTIPROC_DIR"))
        ),
    )
