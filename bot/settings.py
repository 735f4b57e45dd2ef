"""Every configuration model, and the one place that reads the environment.

One TOML file (`--config PATH`, else `$TRADEBOT_CONFIG`, else `config/paper.toml`), overridden by
environment variables with prefix `TRADEBOT_` and `__` for nesting (`TRADEBOT_COINBTR__TOKEN=...`).
TOML floats are read as `Decimal` (`12345678.123456789` stays exact in a money field); float fields
(`sandbox.speed`, intervals in seconds) take them as floats.
Unknown keys are errors. Each section's secret (`api_key` or `token`) is a `SecretStr` that can also come
from a file: `<secret>_file = "/path"` in the section, or systemd's `$CREDENTIALS_DIRECTORY/<section>`
(`LoadCredential=coinbtr:/etc/tradebot/coinbtr.token`).
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot.errors import ConfigError
from bot.notify.kinds import KINDS as NOTIFY_KINDS
from bot.wallet.addresses import CHECKS, address_problem

DEFAULT_CONFIG = Path("config/paper.toml")
ENV_PREFIX = "TRADEBOT_"
ENV_CONFIG = "TRADEBOT_CONFIG"
ENV_CREDENTIALS = "CREDENTIALS_DIRECTORY"
# Environment variables with our prefix that are not configuration fields.
_NON_FIELD_ENV = {ENV_CONFIG, "TRADEBOT_VENV"}

PositiveDecimal = Annotated[Decimal, Field(gt=0)]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0)]


class Section(BaseModel):
    """Base of every section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _SecretSection(Section):
    """A section with one secret that may be given inline, by `<name>_file`, or by systemd credentials."""

    SECTION: ClassVar[str] = ""
    SECRET_FIELD: ClassVar[str] = "api_key"

    def secret(self) -> SecretStr:
        value: SecretStr = getattr(self, self.SECRET_FIELD)
        return value

    @model_validator(mode="before")
    @classmethod
    def _secret_file(cls, data: Any) -> Any:
        return _secret_from_file(data, cls.SECTION, cls.SECRET_FIELD)


def _secret_from_file(data: Any, section: str, secret_field: str) -> Any:
    if not isinstance(data, dict):
        return data
    file_key = f"{secret_field}_file"
    path = data.get(file_key)
    if path:
        try:
            data = {**data, secret_field: Path(path).read_text().strip()}
        except OSError as exc:
            raise ValueError(f"{file_key}: cannot read secret file {path}: {exc.strerror}") from None
    else:
        cred_dir = os.environ.get(ENV_CREDENTIALS)
        if cred_dir and (Path(cred_dir) / section).is_file():
            data = {**data, secret_field: (Path(cred_dir) / section).read_text().strip()}
    return data


class SandboxSettings(Section):
    """Built-in simulators; when enabled every client points at them.

    In-process by default (their state under `state_dir/sandbox/`, their clock anchored in
    `state_dir/sandbox-clock.json`, both kept across restarts). With `url` set the daemon uses an external
    `tradebot sandbox` instead and follows its clock (its speed and seed are the external sandbox's).
    """

    enabled: bool = True
    speed: float = Field(60.0, gt=0, le=3600)
    seed: int = 42
    # Base URL of an external `tradebot sandbox` (its port_base), e.g. http://127.0.0.1:18000; when set, the
    # daemon uses it instead of in-process simulators and follows its clock.
    url: str = ""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not (value.startswith(("http://", "https://")) and value.split("://", 1)[1]):
            raise ValueError("must be an http:// or https:// base URL, e.g. http://127.0.0.1:18000")
        return value

    @model_validator(mode="after")
    def _url_needs_enabled(self) -> SandboxSettings:
        if self.url and not self.enabled:
            raise ValueError("url is set but enabled is false: enable the sandbox or remove its url")
        return self


class AtmosSettings(_SecretSection):
    SECTION = "atmos"
    base_url: str = "https://api.atmosbot.com"
    api_key: SecretStr = SecretStr("")
    api_key_file: Path | None = None
    requests_per_minute: int = Field(20, gt=0, le=10_000)



class SfoxSettings(_SecretSection):
    SECTION = "sfox"
    base_url: str = "https://chartdata.sfox.com"
    api_key: SecretStr = SecretStr("")
    api_key_file: Path | None = None
    requests_per_minute: int = Field(60, gt=0, le=10_000)



class CoinbtrSettings(_SecretSection):
    SECTION = "coinbtr"
    SECRET_FIELD = "token"
    base_url: str = "https://api.coinbtr.com"
    token: SecretStr = SecretStr("")
    token_file: Path | None = None
    requests_per_minute: int = Field(60, gt=0, le=10_000)



class AtlasSettings(_SecretSection):
    SECTION = "atlas"
    enabled: bool = True
    base_url: str = "https://atlas.example.com"
    api_key: SecretStr = SecretStr("")
    api_key_file: Path | None = None
    dataset_prefix: str = Field("tradebot", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    share_tags: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in (("batch_size", "batch_size"), ("flush_seconds", "flush_interval_seconds")):
                if old in data:
                    raise ValueError(f"{old}: moved to [recorder] {new}")
        return data



class AtmotubeSettings(_SecretSection):
    SECTION = "atmotube"
    enabled: bool = False
    base_url: str = "https://api.atmotube.com"
    api_key: SecretStr = SecretStr("")
    api_key_file: Path | None = None
    devices: list[str] = []
    poll_seconds: int = Field(300, ge=10)
    requests_per_minute: int = Field(60, gt=0, le=10_000)

    @field_validator("devices")
    @classmethod
    def _macs(cls, v: list[str]) -> list[str]:
        import re

        for mac in v:
            if not re.fullmatch(r"(?i)[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac):
                raise ValueError(f"not a MAC address (AA:BB:CC:DD:EE:FF): {mac!r}")
        return [m.upper() for m in v]



class StatusSettings(_SecretSection):
    SECTION = "status"
    SECRET_FIELD = "token"
    listen: str = "127.0.0.1:8787"
    token: SecretStr = SecretStr("")
    token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8787")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])



class PaperSettings(Section):
    """The paper account: starting balances per coin, and how simulated resting orders fill."""

    balances: dict[str, NonNegativeDecimal] = {"btc": Decimal("1"), "mxn": Decimal("2000000")}
    # The share of a candle's volume a resting paper order may fill (0 < p <= 1), so a big paper order on
    # a thin market fills over several candles rather than all at once.
    participation: Decimal = Field(Decimal("0.5"), gt=0, le=1)


class RecorderSettings(Section):
    """The outbox drain: recorded rows go to the SQLite outbox first, then to Atlas in batches."""

    batch_size: int = Field(1000, ge=1, le=10_000)  # rows per Atlas bulk insert
    flush_interval_seconds: float = Field(5.0, gt=0)  # longest a recorded row waits before a flush
    # A backlog this deep, or this old (clock seconds), raises an alarm long before anything could be lost.
    max_backlog_rows: int = Field(100_000, gt=0)
    max_backlog_age_seconds: float = Field(3600.0, gt=0)


class ExecutionSettings(Section):
    """What the order path does around the edges of a run."""

    # On a clean stop: cancel the bot's open orders ("cancel") or leave them on the book ("keep").
    on_stop: Literal["cancel", "keep"] = "cancel"
    # Price a limit order this many price steps inside the book's best price (0: at the best price).
    price_offset_steps: int = Field(0, ge=0)
    # Cancel open orders on the exchange that the journal has never heard of (orders placed by hand or
    # by another tool on the same account are then cancelled too: off by default).
    cancel_unknown_orders: bool = False
    # Orphans: orders and positions of an instance no longer in the configuration (renamed, removed, market
    # changed). Reported at start-up and on /status; their open orders are cancelled ("cancel") or left on
    # the book ("keep"). Their positions are never traded automatically.
    orphans: Literal["cancel", "keep"] = "cancel"


DEFAULT_NOTIFY_EVENTS = list(NOTIFY_KINDS)


def _notify_kind(v: str) -> str:
    if v not in NOTIFY_KINDS:
        raise ValueError(f"unknown notification kind {v!r} (known: {', '.join(NOTIFY_KINDS)})")
    return v


NotifyKind = Annotated[str, AfterValidator(_notify_kind)]


class NotifySettings(Section):
    """Notifications to people (chat, mail, push) for selected events. Every URL is a secret: it usually
    carries a token. URLs come from `urls`, from `urls_file` (one per line, `#` comments), and from
    systemd's `$CREDENTIALS_DIRECTORY/notify`; all of them are used."""

    SECTION: ClassVar[str] = "notify"

    enabled: bool = False
    urls: list[SecretStr] = []
    urls_file: Path | None = None
    # Notification kinds (`bot.notify.kinds`) that are sent; anything else is only logged and recorded.
    events: list[NotifyKind] = DEFAULT_NOTIFY_EVENTS
    # At most one message per event kind per this many seconds (what comes meanwhile is listed in the next
    # one); kinds not given keep their defaults (`bot.notify.kinds.MIN_INTERVAL_S`).
    min_interval_seconds: dict[NotifyKind, Annotated[float, Field(ge=0)]] = {}
    # Send a summary of the day at this time of day, UTC (e.g. 08:00:00); none when unset.
    daily_summary_at: time | None = None
    # Messages kept per URL while its service is down; past this the oldest are dropped (and counted).
    queue_size: int = Field(200, ge=1, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _urls_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        extra: list[str] = []
        path = data.get("urls_file")
        if path:
            try:
                extra += _url_lines(Path(path).read_text())
            except OSError as exc:
                raise ValueError(f"urls_file: cannot read {path}: {exc.strerror}") from None
        cred_dir = os.environ.get(ENV_CREDENTIALS)
        if cred_dir and (Path(cred_dir) / cls.SECTION).is_file():
            extra += _url_lines((Path(cred_dir) / cls.SECTION).read_text())
        if extra:
            data = {**data, "urls": [*data.get("urls", []), *extra]}
        return data

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[SecretStr]) -> list[SecretStr]:
        for i, url in enumerate(v):
            parts = urlsplit(url.get_secret_value())
            if not parts.scheme or not (parts.netloc or parts.path):
                # Never echo the value: it is a secret.
                raise ValueError(f"item {i} is not a URL (expected scheme://...; not shown: it is a secret)")
        return v

    @model_validator(mode="after")
    def _enabled_needs_urls(self) -> NotifySettings:
        if self.enabled and not self.urls:
            raise ValueError("urls: notifications are enabled but no URL is configured (urls, urls_file or the "
                             "\"notify\" credential)")
        return self

    def secrets(self) -> list[str]:
        """Each URL, the URL without its scheme, and every token-like part of it (user, password, host that
        is not a plain host name, path segments, query values): whatever a log line might carry."""
        out: list[str] = []
        for url in self.urls:
            value = url.get_secret_value()
            out += [value, value.split("://", 1)[-1], *url_token_parts(value)]
        return [s for s in out if s]


_PLAIN_HOST = re.compile(r"^(?:[a-z0-9-]+\.)+[a-z]{2,}$|^\d{1,3}(?:\.\d{1,3}){3}$|^localhost$|^\[[0-9a-f:]+\]$",
                         re.IGNORECASE)
_MIN_TOKEN_PART = 6  # shorter parts ("json", a port) are not worth masking everywhere in the log


def url_token_parts(url: str) -> list[str]:
    """The parts of an Apprise URL that may be (or hold) a token: `tgram://BOTTOKEN/CHAT` → the bot token
    and the chat; `ntfys://TOPIC` → the topic; `mailto://user:PASS@host` → user and password. A public host
    name (`ntfy.sh`, `hooks.slack.com`, an IP address) is not a secret and is left out."""
    rest = url.split("://", 1)[-1]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, at, host = netloc.rpartition("@")
    parts: list[str] = []
    if at:
        parts += userinfo.split(":", 1)
    hostname = host.rsplit(":", 1)[0] if re.fullmatch(r".*:\d{1,5}", host) else host
    if not _PLAIN_HOST.match(hostname):
        parts.append(host)
    parts += [p for p in path.split("/") if p]
    parts += [kv.partition("=")[2] for kv in query.split("&") if kv]
    decoded = [unquote(p) for p in parts]
    return sorted({p for p in (*parts, *decoded) if len(p) >= _MIN_TOKEN_PART})


def _url_lines(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class RiskSettings(Section):
    max_order_value: dict[str, PositiveDecimal] = {"mxn": Decimal("50000")}
    max_open_orders: int = Field(4, ge=0)
    daily_loss_limit: dict[str, PositiveDecimal] = {"mxn": Decimal("20000")}
    # While this file exists nothing is placed and open orders are cancelled. A relative path is taken
    # inside `state_dir` (never the working directory, which under systemd is `/`).
    kill_switch_file: Path = Path("KILL")


class SweepSettings(Section):
    """One sweep: what of `coin` exceeds `keep` goes to `address` (the only place it may go), at most
    `max_per_day` per UTC day. The address is checked for its coin's format and checksum."""

    coin: str = Field(min_length=1)
    keep: NonNegativeDecimal
    address: str = Field(min_length=1)
    max_per_day: PositiveDecimal

    @field_validator("coin")
    @classmethod
    def _coin(cls, v: str) -> str:
        coin = v.strip().lower()
        if coin not in CHECKS:
            raise ValueError(f"no address format is known for {v!r} (sweepable coins: {', '.join(sorted(CHECKS))})")
        return coin

    @field_validator("address")
    @classmethod
    def _address(cls, v: str, info: ValidationInfo) -> str:
        coin = info.data.get("coin")
        if coin is None:  # the coin itself failed: reported there
            return v
        problem = address_problem(coin, v)
        if problem:  # the address is not secret (it is on /status), but only the problem is needed here
            raise ValueError(f"not a valid {coin} address: {problem}")
        return v


class WalletSettings(Section):
    """The wallet watcher and sweeps (sweeps run only in live mode with `withdrawals_enabled`)."""

    poll_seconds: int = Field(60, ge=1)
    withdrawals_enabled: bool = False
    sweeps: list[SweepSettings] = []

    @field_validator("sweeps")
    @classmethod
    def _one_per_coin(cls, v: list[SweepSettings]) -> list[SweepSettings]:
        coins = [s.coin for s in v]
        dupes = sorted({c for c in coins if coins.count(c) > 1})
        if dupes:
            raise ValueError(f"one sweep per coin (one withdrawal in flight per coin), repeated: {', '.join(dupes)}")
        return v


class MarketSettings(Section):
    """Market-data behaviour shared by every stream."""

    stale_grace_seconds: int = Field(30, ge=0)
    max_candles: int = Field(2000, ge=100, le=100_000)
    # A restart evaluates and records the candles it missed, back this far at most (the longest is 7 days).
    max_backfill_hours: float = Field(168.0, gt=0, le=168)


class AtmosFeed(Section):
    source: Literal["atmos"]
    exchange: Literal["binance", "kraken", "coinbase"] = "binance"
    symbol: str = Field(min_length=1)

    @property
    def key(self) -> str:
        return f"atmos:{self.exchange}:{self.symbol.upper()}"

    @property
    def period(self) -> int:
        return 60


class SfoxFeed(Section):
    source: Literal["sfox"]
    pair: str = Field(min_length=1)
    period: Literal[60, 300, 900, 3600, 21600, 86400] = 60

    @property
    def key(self) -> str:
        return f"sfox:{self.pair.lower()}:{self.period}"


Feed = Annotated[AtmosFeed | SfoxFeed, Field(discriminator="source")]


class StrategySettings(Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    strategy: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    market: str = Field(pattern=r"^[a-z0-9]+-[a-z0-9]+$")
    feed: Feed
    params: dict[str, Any] = {}
    order_amount: PositiveDecimal
    order_ttl_seconds: int = Field(300, ge=1)
    # Exits CoinBTR cannot hold (it has only limit orders): watched by the bot on the book, exited with a
    # marketable limit when the price crosses this far (percent) from the position's average entry.
    stop_loss_pct: Decimal | None = Field(None, gt=0, lt=100)
    take_profit_pct: Decimal | None = Field(None, gt=0)
    enabled: bool = True

    @field_validator("market", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class Settings(BaseSettings):
    """The whole configuration of one tradebot instance."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    mode: Literal["paper", "live"] = "paper"
    state_dir: Path = Path("var")
    strategy_paths: list[Path] = []
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Tells apart several bots writing to one Atlas; the systemd template unit sets it from %i
    # (TRADEBOT_BOT_NAME).
    bot_name: str = Field("default", pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    # The whole shutdown bound (settle orders, drain the outbox, close); well under systemd's TimeoutStopSec=90.
    stop_timeout_seconds: float = Field(20.0, gt=0, le=80)
    sandbox: SandboxSettings = SandboxSettings()
    atmos: AtmosSettings = AtmosSettings()
    sfox: SfoxSettings = SfoxSettings()
    coinbtr: CoinbtrSettings = CoinbtrSettings()
    atlas: AtlasSettings = AtlasSettings()
    atmotube: AtmotubeSettings = AtmotubeSettings()
    status: StatusSettings = StatusSettings()
    paper: PaperSettings = PaperSettings()
    recorder: RecorderSettings = RecorderSettings()
    execution: ExecutionSettings = ExecutionSettings()
    notify: NotifySettings = NotifySettings()
    risk: RiskSettings = RiskSettings()
    wallet: WalletSettings = WalletSettings()
    market: MarketSettings = MarketSettings()
    strategies: list[StrategySettings] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the TOML file (passed as init kwargs); no dotenv, no secrets dir magic.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        names = [s.name for s in self.strategies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"strategies: instance names must be unique, repeated: {', '.join(dupes)}")
        folded = [n.lower() for n in names]
        clash = sorted({n for n in names if folded.count(n.lower()) > 1})
        if clash:  # their Atlas datasets would share one name
            raise ValueError(f"strategies: instance names must differ in more than case: {', '.join(clash)}")
        if self.mode == "live" and not self.coinbtr.token.get_secret_value():
            raise ValueError("coinbtr.token: live mode needs a CoinBTR token")
        return self

    @property
    def kill_switch_path(self) -> Path:
        """`risk.kill_switch_file`, inside `state_dir` when relative."""
        f = self.risk.kill_switch_file
        return f if f.is_absolute() else self.state_dir / f

    def secrets(self) -> list[str]:
        """Every configured secret value (non-empty), for log redaction."""
        sections: list[_SecretSection] = [
            self.atmos, self.sfox, self.coinbtr, self.atlas, self.atmotube, self.status
        ]
        values = [v for v in (s.secret().get_secret_value() for s in sections) if v]
        return values + self.notify.secrets()

    def public_dump(self) -> dict[str, Any]:
        """The resolved configuration as plain data with every secret masked."""
        data = self.model_dump(mode="json")
        return data


def resolve_config_path(path: str | Path | None) -> Path:
    """`--config`, else `$TRADEBOT_CONFIG`, else `config/paper.toml`."""
    if path:
        return Path(path)
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else DEFAULT_CONFIG


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before")) or "(root)"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        path = _dotted(loc)
        # A failing model validator reports at the model; its message may start with the field path.
        if ": " in msg and path in {"(root)"} | {str(p) for p in loc[:1]}:
            head, _, rest = msg.partition(": ")
            if " " not in head:
                path = head if path == "(root)" else f"{path}.{head}"
                msg = rest
        out.append((path, msg))
    return out


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate the configuration. Raises `ConfigError` listing every problem by dotted path."""
    cfg_path = resolve_config_path(path)
    try:
        raw = cfg_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {cfg_path}: {exc.strerror}",
                          [("(file)", f"{cfg_path}: {exc.strerror}")]) from None
    try:
        # Floats as Decimal: a money value in the file stays exact; float fields convert it themselves.
        data = tomllib.loads(raw.decode("utf-8"), parse_float=Decimal)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path} is not valid TOML: {exc}", [("(file)", str(exc))]) from None
    try:
        settings = _build(data)
    except ValidationError as exc:
        problems = _problems(exc)
        raise ConfigError(f"invalid configuration in {cfg_path}", problems) from None
    return settings


def _build(data: dict[str, Any]) -> Settings:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.upper() in _NON_FIELD_ENV}
    try:
        return Settings(**data)
    finally:
        os.environ.update(saved)
