"""A real redis-server for tests, on 127.0.0.1 and a free port, in a directory of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.support.processes import free_port, wait_until


class RedisServer:
    """`redis-server` as a process; `appendonly=True` (fsync always) survives restarts."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        appendonly: bool = False,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,  # (cert, key, CA): TLS only, on `port`
        extra: list[str] | None = None,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.password = password
        self.tls = tls
        self.extra = extra or []
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        query = f"?ssl_ca_certs={self.tls[2]}" if self.tls else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0{query}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def command(self) -> list[str]:
        cmd = [self.binary, "--bind", "127.0.0.1", "--dir", str(self.directory)]
        cmd += ["--save", "", "--logfile", str(self.log_path), "--daemonize", "no"]
        if self.tls:
            cert, key, ca = self.tls
            cmd += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            cmd += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
            cmd += ["--tls-ca-cert-file", str(ca)]
        else:
            cmd += ["--port", str(self.port)]
        if self.appendonly:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            cmd += ["--appendonly", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd + self.extra

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_until(self._pong, 20, f"redis-server on port {self.port}")
        return self

    def _pong(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(f"redis-server exited {self.proc.returncode}:\n{log[-2000:]}")
        with self.client() as client:
            return bool(client.ping())

    def client(self) -> redis.Redis:
        """A synchronous client for the test to look inside (close it, or use `with`)."""
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def stop(self) -> None:
        """SIGTERM: Redis finishes writing its append-only file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
