"""The Alertmanager API v2 client the card buttons use, against Debian's real Alertmanager:
silences created with exactly the card's labels, read back, expired; failures as
AlertmanagerError that never carry a credential."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from amfeishu.alertmanager import AlertmanagerClient, AlertmanagerError, rfc3339
from amfeishu.config.types import AlertmanagerAPI, Secret
from tests.conftest import need_binary
from tests.support.alertmanager import Alertmanager
from tests.support.callbacks import FakeAlertmanager
from tests.support.processes import free_port

T = TypeVar("T")
LABELS = {"alertname": "DiskFull", "team": "db", "severity": "critical"}
QUIET = {"route": {"receiver": "nowhere"}, "receivers": [{"name": "nowhere"}]}


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    binary = need_binary("prometheus-alertmanager", "prometheus-alertmanager")
    with Alertmanager(binary, QUIET, workdir=tmp_path_factory.mktemp("am")) as am:
        yield am


def using(api: AlertmanagerAPI, body: Callable[[AlertmanagerClient], Awaitable[T]], **kw: Any) -> T:
    async def go() -> T:
        client = AlertmanagerClient(api, **kw)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def silence(am: Alertmanager, silence_id: str) -> dict[str, Any]:
    """Read back through Alertmanager's own API, not through the client under test."""
    listed: list[dict[str, Any]] = httpx.get(f"{am.url}/api/v2/silences", timeout=5).json()
    found = [s for s in listed if s["id"] == silence_id]
    assert len(found) == 1, found
    return found[0]


def test_a_silence_matches_exactly_the_labels_and_reads_back(alertmanager: Alertmanager) -> None:
    now = time.time()

    async def body(client: AlertmanagerClient) -> tuple[str, list[dict[str, Any]]]:
        silence_id = await client.create_silence(
            LABELS, now, now + 3600, "feishu:ou_alice", "silenced from the Feishu card"
        )
        return silence_id, await client.silences()

    silence_id, listed = using(AlertmanagerAPI(alertmanager.url), body)
    got = silence(alertmanager, silence_id)
    assert {m["name"]: m["value"] for m in got["matchers"]} == LABELS
    assert all(m["isEqual"] and not m["isRegex"] for m in got["matchers"])
    assert got["createdBy"] == "feishu:ou_alice"
    assert got["comment"] == "silenced from the Feishu card"
    assert got["status"]["state"] == "active"
    assert got["endsAt"].startswith(rfc3339(now + 3600)[:16])  # to the minute
    assert silence_id in [s["id"] for s in listed]


def test_expire_then_expire_again_is_fine(alertmanager: Alertmanager) -> None:
    now = time.time()

    async def body(client: AlertmanagerClient) -> str:
        silence_id = await client.create_silence(LABELS, now, now + 600, "feishu:ou_bob", "c")
        await client.expire_silence(silence_id)
        await client.expire_silence(silence_id)  # a second click, or another replica
        await client.expire_silence("00000000-0000-4000-8000-000000000000")  # gone: done too
        return silence_id

    silence_id = using(AlertmanagerAPI(alertmanager.url), body)
    assert silence(alertmanager, silence_id)["status"]["state"] == "expired"


def test_a_refused_silence_says_why(alertmanager: Alertmanager) -> None:
    now = time.time()

    async def body(client: AlertmanagerClient) -> str:
        with pytest.raises(AlertmanagerError) as caught:
            await client.create_silence(LABELS, now, now - 60, "feishu:ou_bob", "c")
        return str(caught.value)

    text = using(AlertmanagerAPI(alertmanager.url), body)
    assert text.startswith("Alertmanager refused: HTTP 400")
    assert "start time must be before end time" in text


@pytest.mark.parametrize(
    "api",
    [
        AlertmanagerAPI(f"http://127.0.0.1:{free_port()}", bearer_token=Secret("bearer-SECRET-1")),
        AlertmanagerAPI(
            f"http://127.0.0.1:{free_port()}",
            basic_username="am-user",
            basic_password=Secret("basic-SECRET-2"),
        ),
    ],
    ids=["bearer", "basic"],
)
def test_unreachable_is_an_error_without_credentials(api: AlertmanagerAPI) -> None:
    async def body(client: AlertmanagerClient) -> str:
        with pytest.raises(AlertmanagerError) as caught:
            await client.create_silence(LABELS, 0, 60, "feishu:ou_a", "c")
        return str(caught.value)

    text = using(api, body)
    assert text == "cannot reach Alertmanager (ConnectError)"
    assert "SECRET" not in text


def test_slow_is_an_error_after_the_timeout() -> None:
    with FakeAlertmanager() as fake:
        fake.delay = 10.0
        started = time.monotonic()

        async def body(client: AlertmanagerClient) -> str:
            with pytest.raises(AlertmanagerError) as caught:
                await client.create_silence(LABELS, 0, 60, "feishu:ou_a", "c")
            return str(caught.value)

        text = using(AlertmanagerAPI(fake.url), body, timeout=0.5)
        took = time.monotonic() - started
    assert text == "Alertmanager did not answer within 0.5s"
    assert 0.5 <= took < 2.0


@pytest.mark.parametrize(
    ("api", "header"),
    [
        (AlertmanagerAPI("", bearer_token=Secret("tok-1")), "Bearer tok-1"),
        (
            AlertmanagerAPI("", basic_username="am", basic_password=Secret("pw")),
            "Basic YW06cHc=",
        ),
        (AlertmanagerAPI(""), ""),
    ],
    ids=["bearer", "basic", "none"],
)
def test_credentials_are_sent_as_configured(api: AlertmanagerAPI, header: str) -> None:
    with FakeAlertmanager() as fake:
        configured = AlertmanagerAPI(
            fake.url + "/", api.bearer_token, api.basic_username, api.basic_password
        )

        async def body(client: AlertmanagerClient) -> None:
            silence_id = await client.create_silence(LABELS, 0, 60, "feishu:ou_a", "c")
            await client.expire_silence(silence_id)

        using(configured, body)
        assert [(m, a) for m, _, a in fake.requests] == [("POST", header), ("DELETE", header)]


def test_a_silence_id_cannot_leave_the_silence_path() -> None:
    with FakeAlertmanager() as fake:
        using(AlertmanagerAPI(fake.url), lambda c: c.expire_silence("../silences?x=1"))
        assert [p for _, p, _ in fake.requests] == ["/api/v2/silence/..%2Fsilences%3Fx%3D1"]
