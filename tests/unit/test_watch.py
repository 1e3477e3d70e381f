"""The file watcher: a reload when the content of a watched file changes, and only then.

watch() runs as a task with a short interval; tests wait for a condition
with a deadline, and "nothing happened" is checked over several polls
(counted by the calls to `current`), never by one fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from amfeishu import watch
from amfeishu.config.load import load_config
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import Config
from tests.support.processes import until as wait

HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/0f0e-token-abc"
OTHER_HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/1a2b-token-def-longer"
INTERVAL = 0.05
DEADLINE = 5.0


def config_data(**extra: Any) -> dict[str, Any]:
    return {"storage": {"path": ":memory:"}, "targets": {"ops": {"webhook": HOOK}}, **extra}


def put(path: Path, text: str) -> Path:
    """Write whole, as editors and kubelets do: a poll never sees half a file.

    The staging name starts with "..", like a ConfigMap's internals, which the
    watcher skips under templates.dir (and a config names no such file).
    """
    staging = path.with_name(f"..staging-{path.name}")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
    return path


def put_yaml(path: Path, data: Any) -> Path:
    return put(path, yaml.safe_dump(data, allow_unicode=True))


def configmap_swap(directory: Path, files: dict[str, str], generation: int) -> None:
    """What the kubelet does to a ConfigMap volume: new dir, then swap the ..data symlink."""
    data_dir = directory / f"..2026_11_28_00_00_0{generation}"
    data_dir.mkdir()
    for name, text in files.items():
        (data_dir / name).write_text(text, encoding="utf-8")
    old = directory / "..data"
    previous = os.readlink(old) if old.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.symlink_to(data_dir.name)
    os.replace(tmp, old)
    if previous:
        shutil.rmtree(directory / previous)
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)


class Harness:
    """The service's side of watch(): the current config and a recording reload."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = load_config(path, env={})
        self.polls = 0
        self.reloads: list[list[str]] = []  # what each reload returned

    def current(self) -> Config:
        self.polls += 1
        return self.config

    def reload(self) -> list[str]:
        """As Service.reload: the new config, or its problems and the old one kept."""
        problems: list[str] = []
        try:
            self.config = load_config(self.path, env={})
        except ConfigError as exc:
            problems = exc.problems
        self.reloads.append(problems)
        return problems


async def until(condition: Callable[[], bool], what: str) -> None:
    await wait(condition, what, DEADLINE)


async def quiet(harness: Harness, polls: int = 4) -> None:
    """Let `polls` more polls start: at least polls - 1 whole ones after now."""
    start = harness.polls
    await until(lambda: harness.polls >= start + polls, f"{polls} more polls")


@contextlib.asynccontextmanager
async def watching(harness: Harness) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watch.watch(harness.current, harness.reload, INTERVAL))
    try:
        # the second call to current() comes after the first snapshot was taken
        await until(lambda: harness.polls >= 2, "the watcher's first poll")
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_content_change_of_the_config_reloads_once(tmp_path: Path) -> None:
    path = put_yaml(tmp_path / "amfeishu.yaml", config_data())
    harness = Harness(path)

    async def scenario() -> None:
        async with watching(harness):
            data = config_data()
            data["targets"]["dev"] = {"webhook": OTHER_HOOK}
            put_yaml(path, data)
            await until(lambda: len(harness.reloads) == 1, "the reload")
            await quiet(harness)

    asyncio.run(scenario())
    assert harness.reloads == [[]]
    assert sorted(harness.config.targets) == ["dev", "ops"]


def test_a_touch_with_the_same_content_does_not_reload(tmp_path: Path) -> None:
    path = put_yaml(tmp_path / "amfeishu.yaml", config_data())
    harness = Harness(path)

    async def scenario() -> None:
        async with watching(harness):
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
            put(path, path.read_text(encoding="utf-8"))  # rewritten, same bytes
            await quiet(harness)

    asyncio.run(scenario())
    assert harness.reloads == []


def test_signature_sees_a_touch_and_digest_tells_it_apart(tmp_path: Path) -> None:
    path = put_yaml(tmp_path / "amfeishu.yaml", config_data())
    where = watch.watched(load_config(path, env={}))
    seen, content = watch.signature(*where), watch.digest(*where)

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert watch.signature(*where) != seen  # cheap check: something moved
    assert watch.digest(*where) == content  # the content did not: no reload

    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("0f0e", "9f9e"), encoding="utf-8")  # same size
    assert watch.digest(*where) != content


def new_set(templates: Path) -> None:
    (templates / "team").mkdir()
    put(templates / "team" / "text.json.j2", "{}\n")


TEMPLATE_CHANGES: dict[str, Callable[[Path], object]] = {
    "a new file": lambda d: put(d / "default" / "resolved.json.j2", "{{ 1 }}\n"),
    "a new set": new_set,
    "an edited file": lambda d: put(d / "default" / "_macros.j2", "{# edited #}\n"),
    "a removed file": lambda d: (d / "default" / "_macros.j2").unlink(),
}


@pytest.mark.parametrize("change", sorted(TEMPLATE_CHANGES))
def test_a_change_under_templates_dir_reloads(tmp_path: Path, change: str) -> None:
    templates = tmp_path / "templates"
    (templates / "default").mkdir(parents=True)
    (templates / "default" / "_macros.j2").write_text("{# mine #}\n", encoding="utf-8")
    path = put_yaml(tmp_path / "amfeishu.yaml", config_data(templates={"dir": str(templates)}))
    harness = Harness(path)

    async def scenario() -> None:
        async with watching(harness):
            TEMPLATE_CHANGES[change](templates)
            await until(lambda: len(harness.reloads) == 1, "the reload")
            await quiet(harness)

    asyncio.run(scenario())
    assert harness.reloads == [[]]


def test_a_secret_named_by_webhook_file_reloads(tmp_path: Path) -> None:
    secret = put(tmp_path / "webhook", HOOK + "\n")
    data = {"storage": {"path": ":memory:"}, "targets": {"ops": {"webhook_file": "webhook"}}}
    path = put_yaml(tmp_path / "amfeishu.yaml", data)
    harness = Harness(path)

    async def scenario() -> None:
        async with watching(harness):
            put(secret, OTHER_HOOK + "\n")
            await until(lambda: len(harness.reloads) == 1, "the reload")

    asyncio.run(scenario())
    assert harness.reloads == [[]]
    webhook = harness.config.targets["ops"].webhook
    assert webhook is not None and webhook.get() == OTHER_HOOK


def test_a_configmap_swap_reloads_when_the_content_changes(tmp_path: Path) -> None:
    mounted = tmp_path / "config"
    mounted.mkdir()
    data = {"storage": {"path": ":memory:"}, "targets": {"ops": {"webhook_file": "webhook"}}}
    files = {"amfeishu.yaml": yaml.safe_dump(data), "webhook": HOOK}
    configmap_swap(mounted, files, 1)
    harness = Harness(mounted / "amfeishu.yaml")

    async def scenario() -> None:
        async with watching(harness):
            configmap_swap(mounted, files, 2)  # the same content again: no reload
            await quiet(harness)
            assert harness.reloads == []

            configmap_swap(mounted, {**files, "webhook": OTHER_HOOK}, 3)
            await until(lambda: len(harness.reloads) == 1, "the reload after the swap")

    asyncio.run(scenario())
    assert harness.reloads == [[]]
    webhook = harness.config.targets["ops"].webhook
    assert webhook is not None and webhook.get() == OTHER_HOOK


def test_a_failed_reload_does_not_stop_the_watcher(tmp_path: Path) -> None:
    path = put_yaml(tmp_path / "amfeishu.yaml", config_data())
    harness = Harness(path)

    async def scenario() -> None:
        async with watching(harness) as task:
            put_yaml(path, config_data(bogus=1))
            await until(lambda: len(harness.reloads) == 1, "the failed reload")
            await quiet(harness)  # the same bad content is not tried again
            assert len(harness.reloads) == 1

            data = config_data()
            data["targets"]["dev"] = {"webhook": OTHER_HOOK}
            put_yaml(path, data)
            await until(lambda: len(harness.reloads) == 2, "the reload after the fix")
            assert not task.done()

    asyncio.run(scenario())
    assert harness.reloads[0] == ["bogus: unknown key"]
    assert harness.reloads[1] == []
    assert "dev" in harness.config.targets


def test_a_poll_that_raises_does_not_stop_the_watcher(tmp_path: Path) -> None:
    path = put_yaml(tmp_path / "amfeishu.yaml", config_data())
    harness = Harness(path)
    current = harness.current
    failures = []

    def flaky() -> Config:
        config = current()
        if harness.polls == 3:
            failures.append(harness.polls)
            raise RuntimeError("a bad poll")
        return config

    harness.current = flaky  # type: ignore[method-assign]

    async def scenario() -> None:
        async with watching(harness) as task:
            await until(lambda: bool(failures), "the bad poll")
            put_yaml(path, config_data(listen="127.0.0.1:9999"))
            await until(lambda: len(harness.reloads) == 1, "the reload after it")
            assert not task.done()

    asyncio.run(scenario())
    assert harness.config.listen == "127.0.0.1:9999"


def test_watched_names_the_config_its_secrets_tls_and_templates(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    for name in ("webhook", "secret", "token", "server.crt", "server.key"):
        (tmp_path / name).write_text(HOOK if name == "webhook" else "x", encoding="utf-8")
    data = {
        "storage": {"path": ":memory:"},
        "templates": {"dir": "templates"},
        "auth": {"bearer_token_file": str(tmp_path / "token")},
        "tls": {"cert_file": "server.crt", "key_file": "server.key"},
        "targets": {"ops": {"webhook_file": "webhook", "secret_file": "secret"}},
    }
    path = put_yaml(tmp_path / "amfeishu.yaml", data)

    files, templates = watch.watched(load_config(path, env={}))

    names = ["amfeishu.yaml", "token", "webhook", "secret", "server.crt", "server.key"]
    assert sorted(files) == sorted(tmp_path / n for n in names)
    assert templates == tmp_path / "templates"


def test_watched_follows_a_symlinked_config_to_its_secrets(tmp_path: Path) -> None:
    real, visible = tmp_path / "real", tmp_path / "etc"
    real.mkdir()
    visible.mkdir()
    (real / "webhook").write_text(HOOK, encoding="utf-8")
    data = {"storage": {"path": ":memory:"}, "targets": {"ops": {"webhook_file": "webhook"}}}
    put_yaml(real / "amfeishu.yaml", data)
    (visible / "amfeishu.yaml").symlink_to(real / "amfeishu.yaml")

    files, _ = watch.watched(load_config(visible / "amfeishu.yaml", env={}))

    # load_config read real/webhook; a watcher of etc/webhook never sees it change
    assert any(f.resolve() == (real / "webhook").resolve() for f in files), files


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", 2.0),
        ("  ", 2.0),
        ("0", None),
        ("off", None),
        ("OFF", None),
        ("false", None),
        ("no", None),
        ("0s", None),
        ("0.0", None),
        ("500ms", 0.5),
        ("3", 3.0),
        ("1.5", 1.5),
        ("1m", 60.0),
        (" 2s ", 2.0),
        ("bogus", 2.0),
        ("-1", 2.0),
        ("5 seconds", 2.0),
    ],
)
def test_configured_interval(raw: str, expected: float | None) -> None:
    assert watch.configured_interval({"AMFEISHU_WATCH_INTERVAL": raw}) == expected


def test_configured_interval_defaults_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert watch.configured_interval({}) == watch.DEFAULT_INTERVAL == 2.0
    monkeypatch.setenv("AMFEISHU_WATCH_INTERVAL", "250ms")
    assert watch.configured_interval() == 0.25
