"""Service.reload: a new generation is swapped in whole, or the old one stays live.

Every failure keeps the very same Generation object, sets
amfeishu_config_last_reload_successful to 0 and names the cause; the
service is never started (reload needs no dispatcher).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from amfeishu import generation as generations
from amfeishu import tls
from amfeishu.config.load import build_config, load_config
from amfeishu.config.types import Config
from amfeishu.service import Service
from tests.conftest import need_binary
from tests.support import certs

HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/0f0e-token-abc"
OTHER_HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/1a2b-token-def"
RELOAD_OK = "amfeishu_config_last_reload_successful"
RELOAD_TIME = "amfeishu_config_last_reload_success_timestamp_seconds"
CONFIG_HASH = "amfeishu_config_hash"


def config_data(**extra: Any) -> dict[str, Any]:
    return {"storage": {"path": ":memory:"}, "targets": {"ops": {"webhook": HOOK}}, **extra}


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


class Loader:
    """load_config(path), or `error` raised instead when set."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: Exception | None = None

    def __call__(self) -> Config:
        if self.error is not None:
            raise self.error
        return load_config(self.path, env={})


def sample(service: Service, name: str = RELOAD_OK) -> float | None:
    return service.metrics.registry.get_sample_value(name)


def running(loader: Loader, tls_flags: tls.Flags | None = None) -> Service:
    """A service as after start(): built from the loader, one good reload behind it."""
    service = Service(generations.build(loader, tls_flags), loader=loader, tls_flags=tls_flags)
    assert service.reload() == []
    assert sample(service) == 1
    return service


def assert_kept(service: Service, old: generations.Generation, problems: list[str]) -> None:
    assert problems
    assert service.generation is old
    assert sample(service) == 0
    assert sample(service, CONFIG_HASH) == generations.config_hash(old.config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml.safe_dump(config_data(tagets={})),
            "tagets: unknown key (did you mean 'targets'?)",
        ),
        (
            yaml.safe_dump(config_data(storage={"path": ":memory:", "pth": "x"})),
            "storage.pth: unknown key",
        ),
        ("targets: [\n", "invalid YAML"),
        (None, "cannot read config"),  # the file is gone
    ],
)
def test_a_config_error_keeps_the_old_generation(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    path = write(tmp_path / "amfeishu.yaml", config_data())
    service = running(Loader(path))
    old = service.generation

    if text is None:
        path.unlink()
    else:
        path.write_text(text, encoding="utf-8")
    problems = service.reload()

    assert_kept(service, old, problems)
    assert any(expected in p for p in problems), problems


def test_a_template_that_does_not_parse_keeps_the_old_generation(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "default").mkdir(parents=True)  # a set without files: the built-ins
    path = write(tmp_path / "amfeishu.yaml", config_data(templates={"dir": str(templates)}))
    service = running(Loader(path))
    old = service.generation

    broken = templates / "default" / "firing-critical.json.j2"
    broken.write_text('{"msg_type": "interactive",\n "card": {{ oops\n', encoding="utf-8")
    problems = service.reload()

    assert_kept(service, old, problems)
    assert any(p.startswith(f"{broken}:2: ") for p in problems), problems


def test_a_template_whose_trial_render_fails_keeps_the_old_generation(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "default").mkdir(parents=True)
    path = write(tmp_path / "amfeishu.yaml", config_data(templates={"dir": str(templates)}))
    service = running(Loader(path))
    old = service.generation

    truncated = templates / "default" / "firing-critical.json.j2"
    truncated.write_text('{"msg_type": "interactive", "card": ', encoding="utf-8")
    problems = service.reload()

    assert_kept(service, old, problems)
    assert any(p.startswith(f"{truncated}: output is not JSON") for p in problems), problems


def test_config_and_template_problems_are_reported_together(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "default").mkdir(parents=True)
    path = write(tmp_path / "amfeishu.yaml", config_data(templates={"dir": str(templates)}))
    service = running(Loader(path))
    old = service.generation

    broken = templates / "default" / "resolved.json.j2"
    broken.write_text("{{ oops\n", encoding="utf-8")
    write(path, config_data(templates={"dir": str(templates)}, bogus=1))
    problems = service.reload()

    assert_kept(service, old, problems)
    assert "bogus: unknown key" in problems
    assert any(p.startswith(f"{broken}:1: ") for p in problems), problems


@pytest.fixture
def server_pair(tmp_path: Path) -> certs.Pair:
    need_binary("openssl", "openssl")
    ca = certs.make_ca(tmp_path / "pki")
    return certs.issue(ca, tmp_path / "pki", "server", server=True)


def tls_config(tmp_path: Path, pair: certs.Pair) -> Path:
    files = {"cert_file": str(pair.cert), "key_file": str(pair.key)}
    return write(tmp_path / "amfeishu.yaml", config_data(tls=files))


@pytest.mark.parametrize("damage", ["garbage", "another key", "missing"])
def test_an_unloadable_certificate_keeps_the_old_generation_until_fixed(
    tmp_path: Path, server_pair: certs.Pair, damage: str
) -> None:
    service = running(Loader(tls_config(tmp_path, server_pair)), tls.Flags())
    old = service.generation
    assert isinstance(old.tls, ssl.SSLContext)

    if damage == "garbage":
        server_pair.key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n", encoding="ascii")
        expected = f"tls: cannot load TLS certificate {server_pair.cert}: "
    elif damage == "another key":
        ca = certs.make_ca(tmp_path / "other", "other")
        server_pair.key.write_bytes(ca.key.read_bytes())
        expected = f"tls: cannot load TLS certificate {server_pair.cert}: "
    else:
        server_pair.key.unlink()
        expected = f"tls.key_file: {server_pair.key} does not exist"
    problems = service.reload()

    assert_kept(service, old, problems)
    assert any(p.startswith(expected) for p in problems), problems

    # renewed in place, as cert-manager does: the next reload reads the new files
    ca = certs.make_ca(tmp_path / "renewed")
    certs.issue(ca, server_pair.cert.parent, "server", server=True)
    assert service.reload() == []
    assert sample(service) == 1
    assert isinstance(service.generation.tls, ssl.SSLContext)
    assert service.generation.tls is not old.tls


def test_tls_removed_from_the_config_keeps_serving_the_old_context(
    tmp_path: Path, server_pair: certs.Pair
) -> None:
    path = tls_config(tmp_path, server_pair)
    service = running(Loader(path), tls.Flags())
    old = service.generation

    write(path, config_data())
    assert service.reload() == []

    assert service.generation is not old
    assert service.generation.config.tls is None
    assert service.generation.tls is old.tls  # HTTPS stays on until a restart
    assert sample(service) == 1


def test_an_unexpected_exception_keeps_the_old_generation(tmp_path: Path) -> None:
    loader = Loader(write(tmp_path / "amfeishu.yaml", config_data()))
    service = running(loader)
    old = service.generation

    loader.error = RuntimeError("disk on fire")
    problems = service.reload()

    assert_kept(service, old, problems)
    assert problems == ["reload failed: RuntimeError: disk on fire"]

    loader.error = None  # and the next reload works again
    assert service.reload() == []
    assert sample(service) == 1


def test_a_good_change_swaps_in_a_new_generation(tmp_path: Path) -> None:
    path = write(tmp_path / "amfeishu.yaml", config_data())
    service = running(Loader(path))
    old = service.generation
    old_hash = sample(service, CONFIG_HASH)
    service.metrics.reload_time.set(0)

    data = config_data()
    data["targets"]["dev"] = {"webhook": OTHER_HOOK}
    write(path, data)
    assert service.reload() == []

    new = service.generation
    assert new is not old
    assert service.config is new.config
    assert sorted(new.config.targets) == ["dev", "ops"]
    assert new.config.targets["dev"].webhook is not None
    assert new.config.targets["dev"].webhook.get() == OTHER_HOOK
    assert new.renderer is not old.renderer
    assert sample(service) == 1
    assert (sample(service, RELOAD_TIME) or 0) > 0
    assert sample(service, CONFIG_HASH) == generations.config_hash(new.config) != old_hash


def test_without_a_loader_there_is_nothing_to_reload() -> None:
    service = Service.from_config(build_config(config_data(), env={}))
    old = service.generation
    before = sample(service, CONFIG_HASH)

    assert service.reload() == ["nothing to reload: serve was started without --config"]

    assert service.generation is old
    assert sample(service, CONFIG_HASH) == before
