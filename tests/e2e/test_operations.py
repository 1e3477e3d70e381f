"""Everyday operations (issue #8): HTTPS, plain messages, scripts, traces, config overlays."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import need_binary
from tests.e2e.conftest import payload
from tests.support.certs import Pair, issue, make_ca
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import Amfeishu, run_cli, wait_until


def peer_certificate(port: int, ca: Pair, client: Pair) -> bytes:
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_socket,
    ):
        der = tls_socket.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(pair: Pair) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pair.cert.read_text())


def test_https_with_client_certificates_and_rotation(
    tmp_path: Path,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    need_binary("openssl", "openssl")
    certs = tmp_path / "certs"
    ca = make_ca(certs)
    server_pair = issue(ca, certs, "server", server=True)
    client = issue(ca, certs, "alertmanager", server=False)
    live = Pair(certs / "live.crt", certs / "live.key")
    shutil.copy(server_pair.cert, live.cert)
    shutil.copy(server_pair.key, live.key)
    config = write_config(
        {
            "tls": {
                "cert_file": str(live.cert),
                "key_file": str(live.key),
                "client_ca_file": str(ca.cert),
            },
            "targets": {"ops": {"webhook": feishu.add_bot("ops")}},
        }
    )
    server = Amfeishu(config, log_path=tmp_path / "tls.log")
    server.scheme = "https"
    server.start(wait=False)
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    anonymous_context = ssl.create_default_context(cafile=str(ca.cert))
    with (
        httpx.Client(verify=context, timeout=10) as https,
        httpx.Client(verify=anonymous_context, timeout=10) as anonymous,
    ):
        try:

            def ready() -> bool:
                return https.get(f"{server.url}/-/ready").status_code == 200

            wait_until(ready, 20, "amfeishu over HTTPS")
            # Alertmanager-style: client certificate, JSON body, over a real TLS handshake.
            response = https.post(f"{server.url}/alerts/ops", json=payload("firing.json"))
            assert response.status_code == 200
            feishu.wait_count("ops", 1)
            # No client certificate: the handshake itself is refused.
            with pytest.raises(httpx.HTTPError):
                anonymous.get(f"{server.url}/-/healthy")
            assert peer_certificate(server.port, ca, client) == der_of(server_pair)
            # Rotate the certificate in place; a reload serves the new one without a restart.
            rotated = issue(ca, certs, "server-rotated", server=True)
            shutil.copy(rotated.cert, live.cert)
            shutil.copy(rotated.key, live.key)
            assert https.post(f"{server.url}/-/reload").status_code == 200
            assert peer_certificate(server.port, ca, client) == der_of(rotated)
        finally:
            server.stop()


@pytest.mark.parametrize("msg_type", ["text", "post"])
def test_plain_messages_carry_the_keyword_firing_and_resolved(
    msg_type: str,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    hook = feishu.add_bot("kw", keyword="告警")  # the fake refuses messages without it (19024)
    server = serve(
        write_config(
            {"targets": {"ops": {"webhook": hook, "msg_type": msg_type, "keyword": "告警"}}}
        )
    )
    assert server.post("/alerts/ops", payload("cjk-hostile-firing.json")).status_code == 200
    assert server.post("/alerts/ops", payload("resolved.json")).status_code == 200
    messages = feishu.wait_count("kw", 2)
    assert [m["msg_type"] for m in messages] == [msg_type, msg_type]
    assert feishu.refused(token="kw") == []
    text = json.dumps(messages[0], ensure_ascii=False)
    assert "<at id=all>" not in text and 'user_id": "all' not in text  # no injected mention


def test_send_through_a_running_server_with_stdin_and_labels(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    server = serve(
        write_config(
            {
                "auth": {"bearer_token": "tok"},
                "targets": {"ops": {"webhook": feishu.add_bot("ops")}},
            }
        )
    )
    log = "line\n" * 10 + "x" * 30_000
    result = run_cli(
        "send",
        "--url",
        server.url,
        "--token",
        "tok",
        "--target",
        "ops",
        "--severity",
        "critical",
        "--title",
        "backup failed",
        "--label",
        "host=db1",
        stdin=log,
    )
    assert result.returncode == 0, result.stderr
    [message] = feishu.wait_count("ops", 1)
    text = json.dumps(message, ensure_ascii=False)
    assert "backup failed" in text and "db1" in text
    assert len(json.dumps(message).encode()) < 20_000  # long input trimmed to fit
    assert server.metric("amfeishu_alerts_received_total", target="ops") == 1
    refused = run_cli("send", "--url", server.url, "--target", "ops", "--title", "x", "--text", "y")
    assert refused.returncode == 1 and "credentials" in refused.stdout


def test_traceparent_reaches_the_card_footer_and_the_delivery_log(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    server = serve(write_config({"targets": {"ops": {"webhook": feishu.add_bot("ops")}}}))
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    response = server.post("/alerts/ops", payload("firing.json"), headers=headers)
    assert response.headers["traceparent"].startswith(f"00-{trace}-")
    [card] = feishu.wait_count("ops", 1)
    assert trace[:12] in json.dumps(card)
    wait_until(
        lambda: f"[{trace[:12]}]" in server.logs() and "delivered" in server.logs(),
        10,
        "the delivery line with the trace id",
    )
    delivered = [line for line in server.logs().splitlines() if "notification delivered" in line]
    assert any(trace[:12] in line for line in delivered)


def test_config_overlays_and_masked_print(tmp_path: Path) -> None:
    base = tmp_path / "base.yml"
    base.write_text(
        "targets:\n  ops:\n    webhook: https://open.feishu.cn/open-apis/bot/v2/hook/tok-123\n"
        "    secret: very-secret\n    language: en\n"
    )
    prod = tmp_path / "prod.yml"
    prod.write_text("targets:\n  ops:\n    language: zh\ndedup: {ttl: 10m}\n")
    result = run_cli("check-config", str(base), str(prod), "--print")
    assert result.returncode == 0, result.stderr
    assert "language: zh" in result.stdout and "ttl: 10m" in result.stdout
    assert "tok-123" not in result.stdout and "very-secret" not in result.stdout
    assert "<secret>" in result.stdout
