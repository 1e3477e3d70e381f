"""The Redis connection every shared part uses, and the layout of its keys.

Every key lives under `amfeishu:` (`$P` in the Lua scripts):

    seq                counter giving outbox entries their numeric ids
    entry:<id>         hash: target, payload, dedup_key, trace_id, received_at, state,
                       attempts, last_error, updated_at, sid (its stream entry)
    outbox:<target>    stream of {id}, group `amfeishu`; an entry is acknowledged (and
                       deleted) only once Feishu said code 0, it was a duplicate, or it died
    pending            zset of unfinished ids; dead, done: dead letters, and delivered or
                       duplicate ids by finish time (payload dropped, purged later)
    dedup:<key>        the entry id that first carried a dedup key (expires after the ttl)
    rate:<sha256>      a bot's sliding log of sends (key: the hash of its webhook)
    lease:<target>     which replica reads the target's stream
    replicas           zset of live replicas by heartbeat
    card:<target>:<g>  an app target's card of alert group g (JSON, 30 days)
    event:<id>         a Feishu callback event already handled (expires)

Scripts that must hold across replicas use Redis's TIME: replicas' clocks may
disagree, the server's does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from amfeishu.backend.base import StorageError

PREFIX = "amfeishu:"
REPLICAS = PREFIX + "replicas"


def entry_key(entry_id: int | str) -> str:
    return f"{PREFIX}entry:{entry_id}"


def stream_key(target: str) -> str:
    return PREFIX + "outbox:" + target


def index_key(name: str) -> str:
    """`pending`, `dead` or `done`."""
    return PREFIX + name


def dedup_key(key: str) -> str:
    return PREFIX + "dedup:" + key


def rate_key(bot: str) -> str:
    return PREFIX + "rate:" + hashlib.sha256(bot.encode()).hexdigest()


def lease_key(target: str) -> str:
    return PREFIX + "lease:" + target


def card_key(target: str, group: str) -> str:
    return f"{PREFIX}card:{target}:{group}"


def event_key(event_id: str) -> str:
    return PREFIX + "event:" + event_id


def consumer_name() -> str:
    """This replica, as the outbox consumer and lease holder: unique per process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Link:
    """One redis.asyncio client for outbox, dedup, limits and leases.

    Every Redis error becomes StorageError naming the server, never the password.
    A command fails fast (one quick retry, then the error): the receiver answers 503
    and Alertmanager retries, rather than holding its request while Redis is away.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        self.where = f"{parts.scheme}://{hosts}{parts.path}"  # no credentials, no query
        given = [parts.password or "", *parse_qs(parts.query).get("password", [])]
        self._secrets = sorted({s for p in given for s in (p, unquote(p)) if s}, key=len)[::-1]
        self._sentinels: list[Redis] = []  # with redis+sentinel://: connections to them
        try:
            self.client = _client(url, self._sentinels)
        except ValueError as exc:  # a malformed URL: redis-py names the part
            raise StorageError(self.describe(exc)) from None

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StorageError(self.describe(exc)) from None

    def describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
        return f"redis at {self.where}: {text}"

    def script(self, source: str) -> Any:
        return self.client.register_script(source.replace("$P", PREFIX))

    async def aclose(self) -> None:
        for client in [self.client, *self._sentinels]:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


def _client(url: str, sentinels: list[Redis]) -> Redis:
    options: dict[str, Any] = {
        "decode_responses": True,
        "protocol": 2,
        "socket_timeout": 3.0,  # more than the 1 s XREADGROUP block
        "socket_connect_timeout": 2.0,
        "health_check_interval": 30,
        # once more on a fresh connection (a pooled one may predate a Redis restart)
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    }
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":  # redis://, rediss:// (TLS), unix://
        return Redis.from_url(url, **options)
    # redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]
    hosts = parts.netloc.rpartition("@")[2]
    nodes = [(h.partition(":")[0], int(h.partition(":")[2] or 26379)) for h in hosts.split(",")]
    service, _, db = parts.path.strip("/").partition("/")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        nodes,
        sentinel_kwargs={k: v for k, v in options.items() if k.startswith("socket_")},
        **options,
    )
    sentinels += sentinel.sentinels
    master: Redis = sentinel.master_for(
        service,
        username=unquote(parts.username or "") or None,
        password=unquote(parts.password or "") or None,
        db=int(db or query.get("db", "0")),
    )
    return master
