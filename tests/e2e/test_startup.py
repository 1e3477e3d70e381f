"""`amfeishu serve` as Alertmanager's neighbours expect it: its flag names, logfmt with
zoned times, and a start-up failure as one line naming cause and fix, never a traceback.

Every test runs the real `python -m amfeishu` as a process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import need_binary
from tests.e2e.conftest import payload
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import ROOT, free_port, run_cli, wait_until

pytestmark = pytest.mark.e2e

UID = os.getuid()
REDIS_FIX = "(check that Redis is up and that storage.redis_url points to it)"
PEM_FIX = "(each file must be PEM: the certificate chain, its private key, the client CA)"


def amfeishu(
    *args: str, env: dict[str, str] | None = None, wrapper: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One run to its end; a serve that wrongly starts is killed by the timeout and fails."""
    return subprocess.run(
        [*(wrapper or []), sys.executable, "-m", "amfeishu", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line(
    result: subprocess.CompletedProcess[str], expected: str | re.Pattern[str]
) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    if isinstance(expected, str):
        assert lines[0] == expected
    else:
        assert expected.fullmatch(lines[0]), lines[0]


@pytest.fixture
def fake_redis_missing(tmp_path: Path) -> dict[str, str]:
    """An environment where `import redis` fails, as without the package."""
    package = tmp_path / "no-redis" / "redis"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("no module named redis (simulated)")\n')
    return {"PYTHONPATH": str(package.parent)}


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "amfeishu.yml"
        path.write_text(text)
        return path

    return write


# --- flags and logs -------------------------------------------------------------------


def test_help_shows_alertmanager_flag_names() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for flag in ("--config.file", "--web.listen-address", "--log.level", "--log.format"):
        assert flag in result.stdout
    assert "logfmt or json" in result.stdout


@dataclass
class Serving:
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Callable[..., Serving]]:
    started: list[Serving] = []

    def start(*args: str, env: dict[str, str]) -> Serving:
        port = free_port()
        log_path = tmp_path / f"serve-{len(started)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "amfeishu",
                    "serve",
                    *args,
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Serving(proc, log_path, f"http://127.0.0.1:{port}")
        started.append(server)

        def ready() -> bool:
            assert proc.poll() is None, server.logs()
            return httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200

        wait_until(ready, 20, "amfeishu ready")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


@pytest.mark.parametrize(
    ("tz", "zone"),
    [(None, "Z"), ("Asia/Shanghai", "+08:00")],  # no daylight saving: any date gives +08:00
)
def test_alertmanager_flags_and_logfmt(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serving: Callable[..., Serving],
    tz: str | None,
    zone: str,
) -> None:
    config = write_config({"targets": {"ops": {"webhook": feishu.add_bot("ops")}}})
    env = {k: v for k, v in os.environ.items() if k != "TZ"} | ({"TZ": tz} if tz else {})
    server = serving(f"--config.file={config}", "--log.format=logfmt", "--log.level=debug", env=env)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    response = httpx.post(f"{server.url}/alerts/ops", json=payload("firing.json"), headers=headers)
    assert response.status_code == 200
    feishu.wait_count("ops", 1)
    wait_until(lambda: "notification delivered" in server.logs(), 10, "the delivery line")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    lines = server.logs().splitlines()
    ts = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}" + re.escape(zone)
    line_re = re.compile(rf"ts={ts} level=(debug|info|warning|error) logger=\S+ msg=.*")
    assert [line for line in lines if not line_re.fullmatch(line)] == []
    assert any(line.startswith("ts=") and " level=debug " in line for line in lines)
    [delivered] = [line for line in lines if 'msg="notification delivered"' in line]
    assert " target=ops outcome=delivered alerts=1 " in delivered
    assert delivered.endswith(f" request_id={trace[:12]}")
    listening = f'msg="amfeishu listening on {server.url}" request_id=-'
    assert any(line.endswith(listening) for line in lines)


# --- start-up failures ----------------------------------------------------------------


@dataclass
class Failure:
    """A config (text, {tmp} replaced), extra serve args, and the one line expected."""

    config: str
    expected: str  # {tmp}, {config} and {uid} are replaced; "re:" starts a regular expression
    args: list[str] = field(default_factory=list)
    redis_missing: bool = False


GOOD_STORAGE = "storage: {{path: {tmp}/data/outbox.db}}\ntargets: {{ops: {{}}}}\n"
FAILURES = {
    "storage not creatable": Failure(
        "storage: {{path: {tmp}/blocker/sub/outbox.db}}\ntargets: {{ops: {{}}}}\n",
        "{config}: storage.path: cannot create {tmp}/blocker/sub: {tmp}/blocker is not a"
        " directory (set storage.path to a file in a writable directory)",
    ),
    "storage is a directory": Failure(
        "storage: {{path: {tmp}}}\ntargets: {{ops: {{}}}}\n",
        "{config}: storage.path: {tmp} is a directory (name a file, such as {tmp}/outbox.db)",
    ),
    "storage not a database": Failure(
        "storage: {{path: {tmp}/blocker}}\ntargets: {{ops: {{}}}}\n",
        "amfeishu: cannot open storage: cannot open outbox {tmp}/blocker: file is not a"
        " database (check storage.path, {tmp}/blocker: is it an amfeishu outbox?)",
    ),
    "redis unreachable": Failure(
        'storage: {{redis_url: "redis://127.0.0.1:{closed_port}/0"}}\ntargets: {{ops: {{}}}}\n',
        r"re:amfeishu: cannot open storage: redis at redis://127\.0\.0\.1:{closed_port}/0: "
        r"Error 111 connecting to 127\.0\.0\.1:{closed_port}\. .+ " + re.escape(REDIS_FIX),
    ),
    "redis package missing": Failure(
        'storage: {{redis_url: "redis://127.0.0.1:{closed_port}/0"}}\ntargets: {{ops: {{}}}}\n',
        "{config}: storage.redis_url: the redis package cannot be imported: no module named"
        " redis (simulated) (pip install 'amfeishu[redis]')",
        redis_missing=True,
    ),
    "TLS file missing": Failure(
        GOOD_STORAGE,
        "amfeishu: --tls-cert-file: cannot read {tmp}/missing.crt: No such file or directory"
        " (check the path, and that uid {uid} may read it)",
        ["--tls-cert-file", "{tmp}/missing.crt"],
    ),
    "TLS file unreadable": Failure(
        GOOD_STORAGE,
        "amfeishu: --tls-cert-file: cannot read {tmp}: Is a directory"
        " (check the path, and that uid {uid} may read it)",
        ["--tls-cert-file", "{tmp}"],
    ),
    "TLS file not PEM": Failure(
        GOOD_STORAGE,
        r"re:amfeishu: cannot serve HTTPS: cannot load TLS certificate {tmp}/blocker: "
        r"\[SSL\] PEM lib \(_ssl\.c:\d+\) " + re.escape(PEM_FIX),
        ["--tls-cert-file", "{tmp}/blocker"],
    ),
    "TLS file of the config missing": Failure(
        "tls: {{cert_file: {tmp}/gone.crt, key_file: {tmp}/blocker}}\n" + GOOD_STORAGE,
        "{config}: tls.cert_file: {tmp}/gone.crt does not exist",
    ),
    "config invalid": Failure(
        "targets: {{ops: {{webhok: https://open.feishu.cn/x}}}}\n",
        "{config}: targets.ops.webhok: unknown key (did you mean 'webhook'?)",
    ),
    "config file missing": Failure(
        "",
        "{tmp}/nowhere.yml: cannot read config: No such file or directory",
        ["--config.file", "{tmp}/nowhere.yml"],
    ),
}


def _fill(text: str, tmp: Path, config: Path, closed_port: int) -> str:
    return text.format(tmp=tmp, config=config, uid=UID, closed_port=closed_port)


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_start_is_one_line(
    tmp_path: Path,
    config_file: Callable[[str], Path],
    fake_redis_missing: dict[str, str],
    case: Failure,
) -> None:
    (tmp_path / "blocker").write_text("a file, not a directory nor a database nor PEM")
    closed_port = free_port()  # nothing listens there
    config = config_file(_fill(case.config, tmp_path, Path(), closed_port))
    args = [_fill(arg, tmp_path, config, closed_port) for arg in case.args]
    result = amfeishu(
        "serve",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{free_port()}",
        *args,
        env=fake_redis_missing if case.redis_missing else None,
    )
    expected = _fill(case.expected, tmp_path, config, closed_port)
    assert_one_line(result, re.compile(expected[3:]) if expected.startswith("re:") else expected)


def test_port_taken(write_config: Callable[..., Path]) -> None:
    config = write_config({"targets": {"ops": {}}})
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = amfeishu("serve", "--config", str(config), "--listen", f"127.0.0.1:{port}")
    assert_one_line(
        result,
        f"amfeishu: cannot listen on 127.0.0.1:{port}: Address already in use (another process"
        " holds it: stop that one, or choose another port with --web.listen-address)",
    )


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, list[str], str]]:
    """A directory this process cannot write: (path, command wrapper, the OS's reason).

    Root writes anywhere mode bits forbid, so as root the directory is made
    read-only by a bind mount in a mount namespace of the command's own.
    """
    directory = tmp_path / "ro"
    directory.mkdir()
    if UID != 0:
        directory.chmod(0o555)
        yield directory, [], "Permission denied"
        directory.chmod(0o755)
        return
    unshare = need_binary("unshare", "util-linux")
    probe = subprocess.run([unshare, "--mount", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"unshare --mount is not allowed here: {probe.stderr!r}")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    yield (
        directory,
        [unshare, "--mount", "sh", "-c", script, "sh", str(directory)],
        ("Read-only file system"),
    )


def test_storage_directory_not_writable(
    write_config: Callable[..., Path], read_only_dir: tuple[Path, list[str], str]
) -> None:
    directory, wrapper, reason = read_only_dir
    config = write_config(
        {"storage": {"path": str(directory / "outbox.db")}, "targets": {"ops": {}}}
    )
    problem = (
        f"storage.path: {directory} is not writable: {reason}"
        f" (make it writable for uid {UID}, or set storage.path elsewhere)"
    )
    listen = f"127.0.0.1:{free_port()}"
    served = amfeishu("serve", "--config", str(config), "--listen", listen, wrapper=wrapper)
    assert_one_line(served, f"{config}: {problem}")
    checked = amfeishu("check-config", str(config), wrapper=wrapper)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [f"{config}: {problem}", "1 problem(s) found"]


def test_debug_adds_the_traceback(config_file: Callable[[str], Path]) -> None:
    port = free_port()
    config = config_file(
        f'storage: {{redis_url: "redis://127.0.0.1:{port}/0"}}\ntargets: {{ops: {{}}}}\n'
    )
    result = amfeishu(
        "serve",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--log-level",
        "debug",
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    [cause] = [i for i, line in enumerate(lines) if line.startswith("amfeishu: cannot open")]
    assert "Traceback (most recent call last):" in lines[cause + 1 :]
    assert lines[-1].startswith("amfeishu.backend.base.StorageError: redis at ")


# --- check-config: what the config needs of this machine -------------------------------


def test_check_config_reports_the_machine_with_the_config(
    tmp_path: Path, config_file: Callable[[str], Path]
) -> None:
    (tmp_path / "blocker").write_text("a file")
    config = config_file(
        f"storage: {{path: {tmp_path}/blocker/sub/outbox.db}}\n"
        "targets: {ops: {webhok: https://open.feishu.cn/x}}\n"
    )
    result = run_cli("check-config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}: targets.ops.webhok: unknown key (did you mean 'webhook'?)",
        f"{config}: storage.path: cannot create {tmp_path}/blocker/sub: {tmp_path}/blocker is not"
        " a directory (set storage.path to a file in a writable directory)",
        "2 problem(s) found",
    ]


def test_check_config_redis_package_missing(
    config_file: Callable[[str], Path], fake_redis_missing: dict[str, str]
) -> None:
    config = config_file('storage: {redis_url: "redis://127.0.0.1:6379/0"}\ntargets: {ops: {}}\n')
    assert amfeishu("check-config", str(config)).returncode == 0
    result = amfeishu("check-config", str(config), env=fake_redis_missing)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}: storage.redis_url: the redis package cannot be imported: no module named"
        " redis (simulated) (pip install 'amfeishu[redis]')",
        "1 problem(s) found",
    ]
