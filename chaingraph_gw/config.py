"""Gateway settings: immutable dataclasses filled from layered sources.

Precedence, lowest first: built-in defaults < YAML config file < environment < command line.

* The config file is ``config_file`` or, when that is None, the ``CHAINGRAPH_CONFIG`` environment variable.
  It holds a top-level mapping with the same keys as :class:`Settings`; ``keepalive`` and ``limits`` are
  nested mappings. Values must already have the right YAML type (``port: "80"`` is an error, and so is
  ``port: true``); floats are accepted only for ``drain_seconds``.
* Environment variables are strings; an empty value counts as unset. ``NODE_ENV=production`` selects
  ``environment: production``, any other value selects ``development``.
* Command-line overrides are keyed by dotted key (``"keepalive.ping_ms"``) or top-level key (``"port"``).
  Values are either already typed or strings, which are parsed like environment values. A value of None
  means "option not given" and is skipped. ``port`` may be 0 here ("pick a free port", used by tests).

Every problem raises :class:`ConfigError` whose message names the source and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "CONFIG_FILE_ENV",
    "ConfigError",
    "KeepAliveSettings",
    "LimitSettings",
    "Settings",
    "load_settings",
    "settings_schema",
]

CONFIG_FILE_ENV = "CHAINGRAPH_CONFIG"
REDACTED = "***"


class ConfigError(Exception):
    """Invalid configuration. ``str(error)`` names the source and the key; ``source``/``key`` are also
    available as attributes (either may be None)."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.key = key


@dataclass(frozen=True)
class KeepAliveSettings:
    enabled: bool = True
    ping_ms: int = 30000
    pong_wait_ms: int = 10000


@dataclass(frozen=True)
class LimitSettings:
    max_frame_bytes: int = 1048576
    max_batch: int = 100
    max_subscriptions: int = 1000
    max_outbound_bytes: int = 16777216
    max_connections: int = 0  # 0 = unlimited


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4021
    role: str = "all"
    mode: str = "local"
    log_level: str = "info"
    log_format: str = "text"
    database_url: str | None = None
    kafka_brokers: str | None = None
    kafka_topics_prefix: str = ""
    data_dir: str = "./var"
    environment: str = "development"
    transformer: str = "superjson"
    drain_seconds: float = 10.0
    trust_forwarded: bool = True
    instance_id: str | None = None
    keepalive: KeepAliveSettings = field(default_factory=KeepAliveSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    auth_enabled: bool = True
    auth_jwt_secret: str | None = None
    worker_concurrency: int = 16
    load_examples: bool = True
    lease_seconds: float = 15.0
    database_pool_size: int = 20
    recovery_sweep_seconds: float = 5.0

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def public_dict(self) -> dict[str, Any]:
        """A JSON-able dict of all settings for start-up logging, with secrets redacted."""
        data = dataclasses.asdict(self)
        if data.get("auth_jwt_secret") is not None:
            data["auth_jwt_secret"] = REDACTED
        if data.get("database_url") is not None:
            data["database_url"] = redact_url(data["database_url"])
        return data


# ---------------------------------------------------------------------------------------------------------
# Value kinds: each knows how to check a typed value (YAML / typed override) and parse a string (env / CLI).


class _Invalid(Exception):
    """A value problem, without the source/key prefix (added by the caller)."""


def _show(value: Any) -> str:
    """Render an offending value for an error message."""
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        try:
            text = repr(value)
        except ValueError:  # an int too large to convert
            return "a very large integer"
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__}"


_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class _Kind:
    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def from_value(self, value: Any, *, cli: bool = False) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def from_text(self, text: str, *, cli: bool = False) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class _Str(_Kind):
    def __init__(self, *, optional: bool = False, allow_empty: bool = False) -> None:
        self.optional = optional
        self.allow_empty = allow_empty

    def describe(self) -> str:
        return "string (optional)" if self.optional else "string"

    def _expected(self) -> str:
        return "a string" if self.allow_empty or self.optional else "a non-empty string"

    def from_value(self, value: Any, *, cli: bool = False) -> Any:
        if value is None and self.optional:
            return None
        if not isinstance(value, str):
            raise _Invalid(f"expected {self._expected()}, got {_show(value)}")
        return self.from_text(value, cli=cli)

    def from_text(self, text: str, *, cli: bool = False) -> Any:
        if text == "":
            if self.optional:
                return None
            if not self.allow_empty:
                raise _Invalid(f"expected {self._expected()}, got {_show(text)}")
        return text


class _Int(_Kind):
    def __init__(self, minimum: int, maximum: int | None = None, *, cli_minimum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.cli_minimum = minimum if cli_minimum is None else cli_minimum

    def _range(self, cli: bool) -> str:
        lo = self.cli_minimum if cli else self.minimum
        return f"{lo}..{self.maximum}" if self.maximum is not None else f">= {lo}"

    def describe(self) -> str:
        return f"integer {self._range(False)}"

    def _expected(self, cli: bool) -> str:
        return f"expected an integer {self._range(cli)}"

    def _check(self, value: int, original: Any, cli: bool) -> int:
        lo = self.cli_minimum if cli else self.minimum
        if value < lo or (self.maximum is not None and value > self.maximum):
            raise _Invalid(f"{self._expected(cli)}, got {_show(original)}")
        return value

    def from_value(self, value: Any, *, cli: bool = False) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"{self._expected(cli)}, got {_show(value)}")
        return self._check(int(value), value, cli)

    def from_text(self, text: str, *, cli: bool = False) -> Any:
        stripped = text.strip()
        try:
            if not _INT_RE.match(stripped):
                raise ValueError(stripped)
            number = int(stripped)
        except ValueError:  # also Python's limit on huge integer strings
            raise _Invalid(f"{self._expected(cli)}, got {_show(text)}") from None
        return self._check(number, text, cli)


class _Float(_Kind):
    def __init__(self, minimum: float) -> None:
        self.minimum = minimum

    def describe(self) -> str:
        return f"number >= {self.minimum:g}"

    def _check(self, value: float, original: Any) -> float:
        if not math.isfinite(value) or value < self.minimum:
            raise _Invalid(f"expected a number >= {self.minimum:g}, got {_show(original)}")
        return value

    def from_value(self, value: Any, *, cli: bool = False) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"expected a number >= {self.minimum:g}, got {_show(value)}")
        return self._check(float(value), value)

    def from_text(self, text: str, *, cli: bool = False) -> Any:
        try:
            number = float(text.strip())
        except ValueError:
            raise _Invalid(f"expected a number >= {self.minimum:g}, got {_show(text)}") from None
        return self._check(number, text)


class _Bool(_Kind):
    def describe(self) -> str:
        return "boolean"

    def from_value(self, value: Any, *, cli: bool = False) -> Any:
        if not isinstance(value, bool):
            raise _Invalid(f"expected a boolean (true/false), got {_show(value)}")
        return value

    def from_text(self, text: str, *, cli: bool = False) -> Any:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise _Invalid(f"expected a boolean (true/false/1/0/yes/no/on/off), got {_show(text)}")


class _Enum(_Kind):
    def __init__(self, *choices: str, aliases: Mapping[str, str] | None = None) -> None:
        self.choices = choices
        self.aliases = dict(aliases or {})

    def describe(self) -> str:
        return "one of " + "|".join(self.choices)

    def _expected(self) -> str:
        return "expected one of " + ", ".join(self.choices)

    def from_value(self, value: Any, *, cli: bool = False) -> Any:
        if not isinstance(value, str):
            raise _Invalid(f"{self._expected()}, got {_show(value)}")
        return self.from_text(value, cli=cli)

    def from_text(self, text: str, *, cli: bool = False) -> Any:
        word = text.strip().lower()
        word = self.aliases.get(word, word)
        if word not in self.choices:
            raise _Invalid(f"{self._expected()}, got {_show(text)}")
        return word


def _node_env(text: str) -> str:
    """NODE_ENV semantics: "production" means production, anything else means development."""
    return "production" if text.strip().lower() == "production" else "development"


@dataclass(frozen=True)
class _Spec:
    key: str  # dotted
    env: str
    kind: _Kind
    help: str
    env_parser: Callable[[str], Any] | None = None  # replaces kind.from_text for the environment


_SPECS: tuple[_Spec, ...] = (
    _Spec("host", "HOST", _Str(), "Interface to listen on"),
    _Spec("port", "PORT", _Int(1, 65535, cli_minimum=0), "TCP port to listen on"),
    _Spec("role", "CHAINGRAPH_ROLE", _Enum("api", "worker", "all"), "Process role: api, worker or all"),
    _Spec(
        "mode",
        "EXECUTION_MODE",
        _Enum("local", "distributed"),
        "Execution mode: local (in-process) or distributed (Kafka + database)",
    ),
    _Spec(
        "log_level",
        "LOG_LEVEL",
        _Enum("debug", "info", "warn", "error", aliases={"warning": "warn"}),
        'Minimum log level ("warning" is accepted for warn)',
    ),
    _Spec(
        "log_format",
        "LOG_FORMAT",
        _Enum("text", "json"),
        "Log output: text lines or one JSON object per line",
    ),
    _Spec("database_url", "DATABASE_URL", _Str(optional=True), "PostgreSQL connection URL"),
    _Spec("kafka_brokers", "KAFKA_BROKERS", _Str(optional=True), "Comma-separated Kafka bootstrap servers"),
    _Spec(
        "kafka_topics_prefix",
        "KAFKA_TOPICS_PREFIX",
        _Str(allow_empty=True),
        "Prefix prepended to every Kafka topic name",
    ),
    _Spec("data_dir", "CHAINGRAPH_DATA_DIR", _Str(), "Directory for local state"),
    _Spec(
        "environment",
        "NODE_ENV",
        _Enum("development", "production"),
        "development or production (production hides error stacks); "
        'from NODE_ENV, anything but "production" means development',
        env_parser=_node_env,
    ),
    _Spec(
        "transformer",
        "CHAINGRAPH_TRANSFORMER",
        _Enum("superjson", "none"),
        "Wire data transformer: superjson or none",
    ),
    _Spec(
        "drain_seconds",
        "CHAINGRAPH_DRAIN_SECONDS",
        _Float(0),
        "On SIGTERM, send a reconnect notice then wait at most this long before exiting",
    ),
    _Spec(
        "trust_forwarded",
        "CHAINGRAPH_TRUST_FORWARDED",
        _Bool(),
        "Take the client address from X-Forwarded-For / X-Real-IP",
    ),
    _Spec(
        "instance_id",
        "CHAINGRAPH_INSTANCE_ID",
        _Str(optional=True),
        "Identifier of this process (generated at start when unset)",
    ),
    _Spec("keepalive.enabled", "CHAINGRAPH_KEEPALIVE_ENABLED", _Bool(), "Send WebSocket keep-alive pings"),
    _Spec("keepalive.ping_ms", "CHAINGRAPH_KEEPALIVE_PING_MS", _Int(100), "Interval between pings (ms)"),
    _Spec(
        "keepalive.pong_wait_ms",
        "CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS",
        _Int(100),
        "Close the connection when no pong arrives within this time (ms)",
    ),
    _Spec("limits.max_frame_bytes", "CHAINGRAPH_MAX_FRAME_BYTES", _Int(1), "Largest accepted inbound frame"),
    _Spec("limits.max_batch", "CHAINGRAPH_MAX_BATCH", _Int(1), "Most requests in one batch message"),
    _Spec(
        "limits.max_subscriptions",
        "CHAINGRAPH_MAX_SUBSCRIPTIONS",
        _Int(1),
        "Most concurrent subscriptions per connection",
    ),
    _Spec(
        "limits.max_outbound_bytes",
        "CHAINGRAPH_MAX_OUTBOUND_BYTES",
        _Int(1),
        "Most bytes buffered for a slow client before it is disconnected",
    ),
    _Spec(
        "limits.max_connections",
        "CHAINGRAPH_MAX_CONNECTIONS",
        _Int(0),
        "Most concurrent connections (0 = unlimited)",
    ),
    _Spec("auth_enabled", "AUTH_ENABLED", _Bool(), "Require authentication"),
    _Spec("auth_jwt_secret", "AUTH_JWT_SECRET", _Str(optional=True), "Secret for verifying JWTs"),
    _Spec(
        "worker_concurrency",
        "CHAINGRAPH_WORKER_CONCURRENCY",
        _Int(1),
        "Executions a worker process runs at the same time",
    ),
    _Spec(
        "database_pool_size",
        "CHAINGRAPH_DATABASE_POOL_SIZE",
        _Int(1),
        "Distributed: most PostgreSQL connections one process keeps (subscription replays read from it)",
    ),
    _Spec(
        "lease_seconds",
        "CHAINGRAPH_LEASE_SECONDS",
        _Float(1),
        "Distributed: a worker's lease on a running execution; another worker takes over after it expires",
    ),
    _Spec(
        "recovery_sweep_seconds",
        "CHAINGRAPH_RECOVERY_SWEEP_SECONDS",
        _Float(0.1),
        "Distributed: how often workers look for executions whose worker died",
    ),
    _Spec(
        "load_examples",
        "CHAINGRAPH_LOAD_EXAMPLES",
        _Bool(),
        "Import examples/flows/ into an empty flow store on start",
    ),
)

_SECTIONS: dict[str, type] = {"keepalive": KeepAliveSettings, "limits": LimitSettings}
_BY_KEY: dict[str, _Spec] = {spec.key: spec for spec in _SPECS}


def _dataclass_keys() -> list[str]:
    keys: list[str] = []
    for f in dataclasses.fields(Settings):
        if f.name in _SECTIONS:
            keys.extend(f"{f.name}.{sub.name}" for sub in dataclasses.fields(_SECTIONS[f.name]))
        else:
            keys.append(f.name)
    return keys


# Keep the table and the dataclasses in step (checked once at import).
if sorted(_dataclass_keys()) != sorted(_BY_KEY):  # pragma: no cover - programming error
    raise RuntimeError("config: _SPECS does not match the Settings fields")

_ORDER: list[str] = _dataclass_keys()


def _default(key: str) -> Any:
    section, _, leaf = key.partition(".")
    if leaf:
        return getattr(_SECTIONS[section](), leaf)
    f = next(f for f in dataclasses.fields(Settings) if f.name == key)
    return f.default


def settings_schema() -> list[tuple[str, str, Any, str, str]]:
    """``(dotted key, env var, default, type description, one-line help)`` for every setting, in field
    order; for README / ``--help`` generation."""
    by_key = _BY_KEY
    return [
        (key, by_key[key].env, _default(key), by_key[key].kind.describe(), by_key[key].help) for key in _ORDER
    ]


# ---------------------------------------------------------------------------------------------------------
# Sources


def _suggest(key: str) -> str:
    """A ' (did you mean "x"?)' hint for an unknown dotted key, or ""."""
    candidates = list(_BY_KEY) + list(_SECTIONS)
    leaf = key.rpartition(".")[2]
    # A known leaf placed in the wrong section (e.g. top-level "ping_ms").
    same_leaf = [k for k in _BY_KEY if k.rpartition(".")[2] == leaf and k != key]
    if len(same_leaf) == 1:
        return f' (did you mean "{same_leaf[0]}"?)'
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not match:
        leaves = {k.rpartition(".")[2]: k for k in _BY_KEY}
        close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.75)
        match = [leaves[close[0]]] if close else []
    return f' (did you mean "{match[0]}"?)' if match else ""


def _read_file(path: str, label: str) -> dict[str, Any]:
    """Read and validate the YAML config file; returns {dotted key: value}."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{label}: cannot read file: {reason}", source=label) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{label}: invalid YAML: {detail}", source=label) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"{label}: expected a mapping at the top level, got {_show(document)}", source=label
        )

    values: dict[str, Any] = {}

    def bad_key(name: Any, where: str) -> ConfigError:
        shown = f"{where}.{name}" if where else str(name)
        if isinstance(name, str) and "." in name and name in _BY_KEY:
            section, _, leaf = name.partition(".")
            return ConfigError(
                f'{label}: unknown key "{shown}" (write it as a nested mapping: "{section}:" then "{leaf}:")',
                source=label,
                key=shown,
            )
        hint = _suggest(shown) if isinstance(name, str) else ""
        return ConfigError(f'{label}: unknown key "{shown}"{hint}', source=label, key=shown)

    def take(key: str, raw: Any) -> None:
        try:
            values[key] = _BY_KEY[key].kind.from_value(raw)
        except _Invalid as exc:
            raise ConfigError(f'{label}: key "{key}": {exc}', source=label, key=key) from None

    for name, raw in document.items():
        if name in _SECTIONS:
            if raw is None:
                continue
            if not isinstance(raw, dict):
                raise ConfigError(
                    f'{label}: key "{name}": expected a mapping, got {_show(raw)}', source=label, key=name
                )
            for sub, sub_raw in raw.items():
                dotted = f"{name}.{sub}"
                if not isinstance(sub, str) or dotted not in _BY_KEY:
                    raise bad_key(sub, name)
                take(dotted, sub_raw)
        elif isinstance(name, str) and name in _BY_KEY and "." not in name:
            take(name, raw)
        else:
            raise bad_key(name, "")
    return values


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in _SPECS:
        text = env.get(spec.env)
        if text is None or text == "":
            continue
        label = f"environment {spec.env}"
        try:
            values[spec.key] = spec.env_parser(text) if spec.env_parser else spec.kind.from_text(text)
        except _Invalid as exc:
            raise ConfigError(f"{label}: {exc}", source="environment", key=spec.key) from None
    return values


def _read_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    flat: list[tuple[str, Any]] = []
    for name, value in overrides.items():
        if not isinstance(name, str):
            raise ConfigError(f"command line: unknown option {name!r}", source="command line")
        key = name.replace("-", "_")
        if key in _SECTIONS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f'command line "{key}": expected a mapping of {key}.* options, got {_show(value)}',
                    source="command line",
                    key=key,
                )
            flat.extend((f"{key}.{sub}".replace("-", "_"), sub_value) for sub, sub_value in value.items())
        else:
            flat.append((key, value))

    values: dict[str, Any] = {}
    for key, value in flat:
        if key not in _BY_KEY:
            raise ConfigError(
                f'command line: unknown option "{key}"{_suggest(key)}', source="command line", key=key
            )
        if value is None:
            continue  # option not given
        kind = _BY_KEY[key].kind
        try:
            values[key] = (
                kind.from_text(value, cli=True)
                if isinstance(value, str)
                else kind.from_value(value, cli=True)
            )
        except _Invalid as exc:
            raise ConfigError(f'command line "{key}": {exc}', source="command line", key=key) from None
    return values


def load_settings(
    *,
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults < config file < environment < overrides.

    ``env`` defaults to ``os.environ``. When ``config_file`` is None, the ``CHAINGRAPH_CONFIG`` variable
    (from ``env``) names the file, if set. Raises :class:`ConfigError`.
    """
    if env is None:
        env = os.environ
    values: dict[str, Any] = {}

    path = config_file
    label_suffix = ""
    if path is None:
        path = env.get(CONFIG_FILE_ENV) or None
        label_suffix = f" (from {CONFIG_FILE_ENV})"
    if path:
        values.update(_read_file(path, f"config file {path}{label_suffix if config_file is None else ''}"))

    values.update(_read_env(env))
    if overrides:
        values.update(_read_overrides(overrides))

    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, value in values.items():
        section, _, leaf = key.partition(".")
        if leaf:
            nested[section][leaf] = value
        else:
            top[key] = value
    for name, cls in _SECTIONS.items():
        top[name] = cls(**nested[name])
    return Settings(**top)


# ---------------------------------------------------------------------------------------------------------
# Redaction

_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>.*)$", re.DOTALL)
_PASSWORD_PARAM_RE = re.compile(
    r"(?i)(?P<name>\b(?:password|passwd|pwd|pass)\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;]*)"
)


def redact_url(url: str) -> str:
    """Replace the password in a connection URL (``scheme://user:pass@host/...``), or in a
    ``password=...`` parameter (URL query or libpq key/value string), with ``***``."""
    match = _URL_RE.match(url)
    if not match:
        return _PASSWORD_PARAM_RE.sub(lambda m: m.group("name") + REDACTED, url)
    scheme, rest = match.group("scheme"), match.group("rest")
    authority, tail = _split_authority(rest)
    userinfo, at, hostinfo = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:{REDACTED}@{hostinfo}"
    return scheme + authority + _PASSWORD_PARAM_RE.sub(lambda m: m.group("name") + REDACTED, tail)


def _first_of(text: str, chars: str, start: int = 0) -> int:
    positions = [p for p in (text.find(c, start) for c in chars) if p != -1]
    return min(positions) if positions else len(text)


def _split_authority(rest: str) -> tuple[str, str]:
    """Split ``user:pass@host:port/path?query`` after the authority. A password containing an unencoded
    "/", "?" or "#" is still recognised (when "user:" precedes it and it is not a numeric port), so that
    it is redacted rather than leaked."""
    end = _first_of(rest, "/?#")
    if "@" not in rest[:end]:
        at, colon = rest.find("@"), rest.find(":")
        if at != -1 and colon != -1 and colon < end < at and not rest[colon + 1 : end].isdigit():
            end = _first_of(rest, "/?#", at)
    return rest[:end], rest[end:]
