"""Callback decryption, signatures and freshness, on the documented test vectors."""

from __future__ import annotations

import base64
import json

import pytest

from amfeishu.feishu.crypto import (
    CallbackError,
    check_timestamp,
    decrypt,
    encrypt,
    legacy_signature,
    open_body,
    signature,
    verify_signature,
)

KEY = "test key"
OFFICIAL = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="
IV_0_15 = (
    "AAECAwQFBgcICQoLDA0OD6alpwIsMFbSsWTHppjb1mFI4BnyvbizprqNB/sb7eIH6nvQS0YN2wSaELhKsOVVW1wZ"
    "eVq8IBiTLwTCpS5yBYY="
)
CHALLENGE = b'{"challenge":"abc","token":"t","type":"url_verification"}'
TS, NONCE, BODY = "1700000000", "nonce123", b'{"schema":"2.0"}'
SHA256_SIG = "778073bd64919300a3300bf522413631f5061dd8a00d67977c5a61657260c948"


# the appendix of the Feishu app API notes: the official vector and the computed ones
@pytest.mark.parametrize(
    ("key", "encrypted", "plaintext"),
    [(KEY, OFFICIAL, b"hello world"), (KEY, IV_0_15, CHALLENGE)],
)
def test_decrypt_matches_the_vectors(key: str, encrypted: str, plaintext: bytes) -> None:
    assert decrypt(encrypted, key) == plaintext


def test_encrypt_with_the_vector_iv_gives_the_vector() -> None:
    assert encrypt(CHALLENGE, KEY, iv=bytes(range(16))) == IV_0_15
    assert decrypt(encrypt(b"x" * 100, "k"), "k") == b"x" * 100


def test_signature_matches_the_vector() -> None:
    assert signature(TS, NONCE, KEY, BODY) == SHA256_SIG
    verify_signature(TS, NONCE, KEY, BODY, SHA256_SIG)
    verify_signature(TS, NONCE, KEY, BODY, SHA256_SIG.upper() + "\n")  # header case and space


def test_legacy_signature_matches_the_vector() -> None:
    assert legacy_signature(TS, NONCE, "vtoken", BODY) == "d5e5da6b0e0fbc74aada3186364b71ae95d20478"


def test_open_body_decrypts_the_envelope() -> None:
    raw = json.dumps({"encrypt": IV_0_15}).encode()
    assert open_body(raw, KEY) == json.loads(CHALLENGE)
    assert open_body(b'{"type":"url_verification"}', None) == {"type": "url_verification"}


def _truncated(blocks: float) -> str:
    return base64.b64encode(base64.b64decode(IV_0_15)[: int(16 * blocks)]).decode()


@pytest.mark.parametrize(
    ("encrypted", "key", "reason", "text"),
    [
        (IV_0_15, "wrong key", "bad_padding", "wrong encrypt_key or corrupted data"),
        (IV_0_15, "", "no_key", "no encrypt_key is configured"),
        ("not base64!", KEY, "bad_base64", "not valid base64"),
        ("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk", KEY, "bad_base64", "not valid base64"),
        (_truncated(1), KEY, "short_data", "16 bytes"),
        (_truncated(0), KEY, "short_data", "0 bytes"),
        (_truncated(2.5), KEY, "short_data", "40 bytes: not a 16-byte IV and whole AES blocks"),
        # the IV and the first block alone: a block that is not the last one, padding broken
        (_truncated(2), KEY, "bad_padding", "bad PKCS#7 padding"),
    ],
)
def test_decrypt_refuses_tampered_input(encrypted: str, key: str, reason: str, text: str) -> None:
    with pytest.raises(CallbackError) as info:
        decrypt(encrypted, key)
    assert info.value.reason == reason
    assert text in str(info.value)
    if key:
        assert key not in str(info.value)


def test_a_flipped_ciphertext_byte_is_refused() -> None:
    raw = bytearray(base64.b64decode(OFFICIAL))
    raw[-1] ^= 0x01  # the padding byte of the only block
    with pytest.raises(CallbackError, match="bad PKCS#7 padding"):
        decrypt(base64.b64encode(bytes(raw)).decode(), KEY)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (b"{not json", KEY, "not_json"),
        (b"[1, 2]", KEY, "not_json"),
        (b'{"encrypt": 5}', KEY, "bad_body"),
        (b'{"type":"url_verification"}', KEY, "not_encrypted"),
        (json.dumps({"encrypt": OFFICIAL}).encode(), KEY, "not_json"),  # "hello world"
        (json.dumps({"encrypt": IV_0_15}).encode(), "wrong key", "bad_padding"),
        (json.dumps({"encrypt": IV_0_15}).encode(), None, "no_key"),
    ],
)
def test_open_body_refuses(raw: bytes, key: str | None, reason: str) -> None:
    with pytest.raises(CallbackError) as info:
        open_body(raw, key)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("ts", "nonce", "key", "body", "received", "reason"),
    [
        (TS, NONCE, KEY, BODY, SHA256_SIG[:-1] + "0", "bad_signature"),
        (TS, NONCE, "wrong key", BODY, SHA256_SIG, "bad_signature"),
        ("1700000001", NONCE, KEY, BODY, SHA256_SIG, "bad_signature"),
        (TS, "nonce124", KEY, BODY, SHA256_SIG, "bad_signature"),
        (TS, NONCE, KEY, BODY + b" ", SHA256_SIG, "bad_signature"),  # the raw bytes count
        (TS, NONCE, KEY, BODY, "签名", "bad_signature"),
        (TS, NONCE, KEY, BODY, "", "no_signature"),
        (TS, NONCE, KEY, BODY, None, "no_signature"),
    ],
)
def test_verify_signature_refuses(
    ts: str, nonce: str, key: str, body: bytes, received: str | None, reason: str
) -> None:
    with pytest.raises(CallbackError) as info:
        verify_signature(ts, nonce, key, body, received)
    assert info.value.reason == reason
    assert key not in str(info.value)


@pytest.mark.parametrize("now", [1700000000, 1700000300, 1699999700, 1700000000.5])
def test_fresh_timestamps_pass(now: float) -> None:
    check_timestamp(TS, now)


@pytest.mark.parametrize(
    ("ts", "now", "reason", "text"),
    [
        (TS, 1700000301, "stale", "301s old: more than 300s"),
        (TS, 1699999699, "stale", "301s in the future"),
        (TS, 1700000000 + 86400, "stale", "86400s old"),
        ("1700000000000", 1700000000, "stale", "in the future"),  # milliseconds, not seconds
        ("", 1700000000, "bad_timestamp", "is not Unix seconds"),
        (None, 1700000000, "bad_timestamp", "is not Unix seconds"),
        ("-5", 1700000000, "bad_timestamp", "is not Unix seconds"),
        ("１７", 1700000000, "bad_timestamp", "is not Unix seconds"),
    ],
)
def test_stale_or_bad_timestamps_are_refused(
    ts: str | None, now: float, reason: str, text: str
) -> None:
    with pytest.raises(CallbackError) as info:
        check_timestamp(ts, now)
    assert info.value.reason == reason
    assert text in str(info.value)


def test_max_age_is_adjustable() -> None:
    check_timestamp(TS, 1700000009, max_age=10)
    with pytest.raises(CallbackError, match="11s old: more than 10s"):
        check_timestamp(TS, 1700000011, max_age=10)
