"""The configuration as frozen dataclasses (README.md, "Configure") and its closed sets.

Parsing lives in config/load.py; every set of allowed values is defined here once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from amfeishu.matchers import Matcher
from amfeishu.models import SEVERITY_ORDER

DEFAULT_LISTEN = "0.0.0.0:8064"
DEFAULT_STORAGE_PATH = "./amfeishu-outbox.db"
# What a card can be about: the template file and the `mentions` keys.
CARD_KINDS = (*SEVERITY_ORDER, "resolved", "default")
LANGUAGES = ("zh", "en", "auto")
MSG_TYPES = ("interactive", "text", "post")
OPEN_ID = re.compile(r"ou_[A-Za-z0-9_-]+")  # used with fullmatch: no "ou_x\n"
EMAIL = re.compile(r"[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"']+")  # for <at email=…> on app cards
# Who an app target sends to, and the pattern of each kind of id (https://open.feishu.cn/document/server-docs/im-v1/message/create).
RECEIVE_ID_TYPES: dict[str, re.Pattern[str]] = {
    "chat_id": re.compile(r"oc_[A-Za-z0-9_-]+"),
    "open_id": OPEN_ID,
    "user_id": re.compile(r"[A-Za-z0-9_-]{1,64}"),
    "union_id": re.compile(r"on_[A-Za-z0-9_-]+"),
    "email": EMAIL,
}
ACTIONS = ("ack", "silence")  # buttons that call back
APP_DOMAINS = {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}
DEFAULT_SILENCE_DURATIONS = ("1h", "4h", "24h")


class Secret:
    """A string that never shows its value in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class RateLimit:
    per_second: float = 5.0
    per_minute: float = 100.0


@dataclass(frozen=True)
class AppDelivery:
    """How an app target delivers: through which app, to whom, with which buttons."""

    app: str
    receive_id_type: str  # one of RECEIVE_ID_TYPES
    receive_id: str
    update_in_place: bool = True
    actions: tuple[str, ...] = ("ack",)
    silence_durations: tuple[str, ...] = DEFAULT_SILENCE_DURATIONS


@dataclass(frozen=True)
class App:
    """A Feishu (or Lark) self-built app: its credentials and callback checks."""

    name: str
    app_id: str
    app_secret: Secret
    base_url: str  # https://open.feishu.cn, https://open.larksuite.com or the configured URL
    encrypt_key: Secret | None = None
    verification_token: Secret | None = None


@dataclass(frozen=True)
class AlertmanagerAPI:
    url: str
    bearer_token: Secret | None = None
    basic_username: str | None = None
    basic_password: Secret | None = None


@dataclass(frozen=True)
class Target:
    name: str
    webhook: Secret | None = None  # None = preview target: logs cards, delivers nowhere
    secret: Secret | None = None
    template: str = "default"
    language: str = "zh"  # zh | en | auto
    timezone: str = "Asia/Shanghai"
    send_resolved: bool = True
    mentions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # severity → ids
    mention_label: str = "feishu_mention"  # label/annotation naming open_ids to @
    rate_limit: RateLimit = field(default_factory=RateLimit)
    msg_type: str = "interactive"  # interactive | text | post
    keyword: str | None = None
    card_template_id: str | None = None  # Feishu CardKit template instead of Jinja2
    card_template_version: str | None = None
    app: AppDelivery | None = None  # a Feishu app target instead of a webhook

    @property
    def preview(self) -> bool:
        return self.webhook is None and self.app is None


@dataclass(frozen=True)
class Route:
    matchers: tuple[Matcher, ...]
    targets: tuple[str, ...]
    continue_: bool = False


@dataclass(frozen=True)
class Auth:
    bearer_token: Secret | None = None
    basic_username: str | None = None
    basic_password: Secret | None = None

    @property
    def enabled(self) -> bool:
        return self.bearer_token is not None or self.basic_username is not None


@dataclass(frozen=True)
class TLS:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None


@dataclass(frozen=True)
class Templates:
    dir: str | None = None
    language: str = "zh"
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class Dedup:
    ttl: float = 300.0
    max_entries: int = 100_000


@dataclass(frozen=True)
class Grouping:
    wait: float = 0.0
    max_alerts_per_card: int = 30


@dataclass(frozen=True)
class Storage:
    path: str = DEFAULT_STORAGE_PATH
    redis_url: Secret | None = None


@dataclass(frozen=True)
class Delivery:
    timeout: float = 10.0
    max_retry_age: float = 3600.0


@dataclass(frozen=True)
class Config:
    listen: str = DEFAULT_LISTEN
    tls: TLS | None = None
    auth: Auth = field(default_factory=Auth)
    templates: Templates = field(default_factory=Templates)
    dedup: Dedup = field(default_factory=Dedup)
    grouping: Grouping = field(default_factory=Grouping)
    storage: Storage = field(default_factory=Storage)
    delivery: Delivery = field(default_factory=Delivery)
    targets: dict[str, Target] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    apps: dict[str, App] = field(default_factory=dict)
    alertmanager: AlertmanagerAPI | None = None
    source: str = "<embedded default>"  # where it was loaded from, for messages
