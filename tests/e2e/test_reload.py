"""Hot reload of templates with a real `amfeishu serve`: good changes apply, bad ones are refused.

Every reload trigger is tried: POST /-/reload, SIGHUP, and the file watcher
(on by default with --config; AMFEISHU_WATCH_INTERVAL=0 turns it off so the
first two are tested on their own).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import Amfeishu, wait_until

pytestmark = pytest.mark.e2e
FIRING = json.loads((SAMPLES / "firing.json").read_text())  # severity critical
NO_WATCH = {"AMFEISHU_WATCH_INTERVAL": "0"}
RELOAD_OK = "amfeishu_config_last_reload_successful"
RELOAD_TIME = "amfeishu_config_last_reload_success_timestamp_seconds"


def card_file(colour: str) -> str:
    return f'{{% import "_macros.j2" as m with context %}}\n{{{{ m.card("{colour}", "red") }}}}\n'


BROKEN = '{% import "_macros.j2" as m with context %}\n{{ m.card("red", "red") }\n'


def alerts() -> Iterator[dict[str, Any]]:
    """Payloads that differ in fingerprint, so the dedup window lets each through."""
    n = 0
    while True:
        n += 1
        data = copy.deepcopy(FIRING)
        data["alerts"][0]["fingerprint"] = f"{n:016x}"
        data["alerts"][0]["labels"]["instance"] = f"node{n}:9100"
        data["groupKey"] = f'{{}}:{{alertname="HighCPU",n="{n}"}}'
        yield data


@pytest.fixture
def setup(
    tmp_path: Path, feishu: FakeFeishu, write_config: Callable[..., Path]
) -> Callable[..., tuple[Path, Path]]:
    """(config, the critical card file) with templates.dir holding one overridden file."""

    def make(colour: str = "turquoise") -> tuple[Path, Path]:
        templates = tmp_path / "templates"
        (templates / "default").mkdir(parents=True, exist_ok=True)
        file = templates / "default" / "firing-critical.json.j2"
        file.write_text(card_file(colour))
        config = write_config(
            {
                "templates": {"dir": str(templates)},
                "targets": {"ops": {"webhook": feishu.add_bot("ops"), "language": "en"}},
            }
        )
        return config, file

    return make


def send(server: Amfeishu, feishu: FakeFeishu, payload: dict[str, Any]) -> dict[str, Any]:
    """The card the payload became."""
    before = len(feishu.messages("ops"))
    response = server.post("/alerts/ops", payload)
    assert response.status_code == 200, response.text
    return feishu.wait_count("ops", before + 1)[before]


def send_and_get_colour(server: Amfeishu, feishu: FakeFeishu, payload: dict[str, Any]) -> str:
    return str(send(server, feishu, payload)["card"]["header"]["template"])


def test_reload_by_http_and_by_sighup(
    setup: Callable[..., tuple[Path, Path]],
    feishu: FakeFeishu,
    serve: Callable[..., Amfeishu],
) -> None:
    config, file = setup("turquoise")
    server = serve(config, env=NO_WATCH)
    payloads = alerts()
    assert send_and_get_colour(server, feishu, next(payloads)) == "turquoise"

    file.write_text(card_file("violet"))
    response = server.post("/-/reload", {})
    assert response.status_code == 200 and response.json() == {"status": "reloaded"}
    assert server.metric(RELOAD_OK) == 1
    assert send_and_get_colour(server, feishu, next(payloads)) == "violet"

    file.write_text(card_file("indigo"))
    reloaded_at = server.metric(RELOAD_TIME)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: server.metric(RELOAD_TIME) > reloaded_at, 10, "the SIGHUP reload")
    assert send_and_get_colour(server, feishu, next(payloads)) == "indigo"
    assert feishu.refusals == []


def test_a_bad_template_is_refused_and_the_old_cards_keep_going(
    setup: Callable[..., tuple[Path, Path]],
    feishu: FakeFeishu,
    serve: Callable[..., Amfeishu],
) -> None:
    config, file = setup("turquoise")
    server = serve(config, env=NO_WATCH)
    payloads = alerts()
    assert server.metric(RELOAD_OK) == 1
    good_hash = server.metric("amfeishu_config_hash")

    file.write_text(BROKEN)
    response = server.post("/-/reload", {})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error.startswith("reload failed, kept the old config: ")
    assert f"{file}:2: " in error  # the file and the line
    assert server.metric(RELOAD_OK) == 0
    assert server.metric("amfeishu_config_hash") == good_hash
    # the old templates still render the cards: not the safe card, not the broken file
    for _ in range(2):
        assert send_and_get_colour(server, feishu, next(payloads)) == "turquoise"

    # SIGHUP with the same broken file: refused the same way
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    failures = "reload failed, keeping the old config"
    wait_until(lambda: server.logs().count(failures) >= 2, 10, "the failed SIGHUP reload")
    assert send_and_get_colour(server, feishu, next(payloads)) == "turquoise"

    file.write_text(card_file("violet"))
    assert server.post("/-/reload", {}).status_code == 200
    assert server.metric(RELOAD_OK) == 1
    assert send_and_get_colour(server, feishu, next(payloads)) == "violet"
    assert feishu.refusals == []


def _configmap_swap(directory: Path, files: dict[str, str], generation: int) -> None:
    """What the kubelet does to a ConfigMap volume: new dir, then swap the ..data symlink."""
    data_dir = directory / f"..2026_11_28_00_00_0{generation}"
    data_dir.mkdir()
    for name, text in files.items():
        (data_dir / name).write_text(text)
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


def test_the_file_watcher_reloads_without_a_signal(
    tmp_path: Path,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    # templates.dir laid out as a mounted ConfigMap (the set's files behind ..data)
    templates = tmp_path / "templates"
    mounted = templates / "default"
    mounted.mkdir(parents=True)
    name = "firing-critical.json.j2"
    _configmap_swap(mounted, {name: card_file("turquoise")}, 1)
    config = write_config(
        {
            "templates": {"dir": str(templates)},
            "targets": {"ops": {"webhook": feishu.add_bot("ops"), "language": "en"}},
        }
    )
    server = serve(config)  # no signal, no POST: the watcher is on by default with --config
    payloads = alerts()
    assert send_and_get_colour(server, feishu, next(payloads)) == "turquoise"

    reloaded_at = server.metric(RELOAD_TIME)
    _configmap_swap(mounted, {name: card_file("violet")}, 2)
    wait_until(lambda: server.metric(RELOAD_TIME) > reloaded_at, 20, "the watcher's reload")
    assert send_and_get_colour(server, feishu, next(payloads)) == "violet"

    # a broken template: refused, logged, the old set keeps working
    _configmap_swap(mounted, {name: BROKEN}, 3)
    wait_until(lambda: server.metric(RELOAD_OK) == 0, 20, "the watcher's failed reload")
    assert f"{mounted / name}:2: " in server.logs()
    assert send_and_get_colour(server, feishu, next(payloads)) == "violet"

    # fixed again
    _configmap_swap(mounted, {name: card_file("indigo")}, 4)
    wait_until(lambda: server.metric(RELOAD_OK) == 1, 20, "the watcher's reload")
    assert send_and_get_colour(server, feishu, next(payloads)) == "indigo"

    # an in-place edit of the config file itself is seen too
    reloaded_at = server.metric(RELOAD_TIME)
    write_config(
        {
            "templates": {"dir": str(templates)},
            "targets": {"ops": {"webhook": feishu.url_for("ops"), "language": "zh"}},
        }
    )
    wait_until(lambda: server.metric(RELOAD_TIME) > reloaded_at, 20, "the config edit's reload")
    card = send(server, feishu, next(payloads))
    assert card["card"]["header"]["title"]["content"].startswith("[告警:1]")
    assert feishu.refusals == []


def test_mentions_cannot_be_injected_from_labels(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    config = write_config(
        {
            "targets": {
                # this bot refuses any @all, like a group whose owner forbids it
                "quiet": {"webhook": feishu.add_bot("quiet", allow_at_all=False)},
                "loud": {"webhook": feishu.add_bot("loud"), "mentions": {"critical": ["all"]}},
            }
        }
    )
    server = serve(config, env=NO_WATCH)
    payload = copy.deepcopy(FIRING)
    alert = payload["alerts"][0]
    alert["labels"]["team"] = "<at id=all></at>"
    alert["labels"]["feishu_mention"] = "all <at id=all></at> <at ids=all,ou_x></at>"
    alert["annotations"]["summary"] = '<at id=all></at> <at user_id="all">所有人</at>'
    alert["annotations"]["description"] = "<at id=all></at>"
    payload["commonLabels"]["team"] = "<at id=all></at>"
    for target in ("quiet", "loud"):
        assert server.post(f"/alerts/{target}", payload).status_code == 200
    [quiet] = feishu.wait_count("quiet", 1)
    [loud] = feishu.wait_count("loud", 1)
    assert feishu.refused(token="quiet") == []
    quiet_text = json.dumps(quiet, ensure_ascii=False)
    assert "<at id=all>" not in quiet_text and "<at ids=" not in quiet_text
    assert "&lt;at id=all&gt;" in quiet_text  # shown as text
    # only the target's own config mentions everyone, exactly once
    assert json.dumps(loud, ensure_ascii=False).count("<at id=all></at>") == 1
