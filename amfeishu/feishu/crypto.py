"""Feishu callbacks: decrypt the `{"encrypt": ...}` body, check its signature and its age.

Facts: https://open.feishu.cn/document/event-subscription-guide/callback-subscription/receive-and-handle-callbacks
(AES-256-CBC, key = SHA-256 of the Encrypt Key, IV = the first 16 bytes, PKCS#7;
`X-Lark-Signature` = hex SHA-256 of timestamp + nonce + Encrypt Key + raw body)
and, for the old-style card callback, the SHA-1 signature with the Verification
Token of https://open.feishu.cn/document/common-capabilities/message-card/add-card-interaction/message-card-security-verification.
Feishu documents no replay window: five minutes is our own policy. No message of
CallbackError ever holds a key, a token or the plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16  # AES block and IV size, bytes
MAX_AGE_SECONDS = 300.0  # a callback older (or further in the future) than this is refused


class CallbackError(Exception):
    """A callback that must not be acted on; `reason` is a short, closed label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def decrypt(encrypted: str, encrypt_key: str) -> bytes:
    """The plaintext of one `encrypt` value (base64 of IV || AES-256-CBC ciphertext)."""
    if not encrypt_key:
        raise CallbackError("no_key", "no encrypt_key is configured to decrypt the callback")
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackError("bad_base64", "the encrypt field is not valid base64") from None
    if len(raw) < 2 * BLOCK or len(raw) % BLOCK:
        detail = f"the encrypted data is {len(raw)} bytes: not a 16-byte IV and whole AES blocks"
        raise CallbackError("short_data", detail)
    decryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(raw[:BLOCK])).decryptor()
    padded = decryptor.update(raw[BLOCK:]) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # a wrong key almost always shows up here: the last block decrypts to noise
        detail = "cannot decrypt: bad PKCS#7 padding (wrong encrypt_key or corrupted data)"
        raise CallbackError("bad_padding", detail) from None


def encrypt(plaintext: bytes, encrypt_key: str, iv: bytes | None = None) -> str:
    """What Feishu sends: base64(iv || ciphertext). For tests and the fake server."""
    iv = os.urandom(BLOCK) if iv is None else iv
    if len(iv) != BLOCK:
        raise ValueError(f"iv must be {BLOCK} bytes, not {len(iv)}")
    padder = padding.PKCS7(BLOCK * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def open_body(raw_body: bytes, encrypt_key: str | None) -> dict[str, Any]:
    """The callback's JSON object: decrypted when it arrives as {"encrypt": ...}.

    A plain body is refused when an encrypt_key is configured: Feishu then always
    encrypts, so a plain one did not come from Feishu.
    """
    outer = _json_object(raw_body, "the callback body")
    encrypted = outer.get("encrypt")
    if encrypted is None:
        if encrypt_key:
            raise CallbackError("not_encrypted", "an encrypt_key is set but the body is plain")
        return outer
    if not isinstance(encrypted, str):
        raise CallbackError("bad_body", "the encrypt field is not a string")
    return _json_object(decrypt(encrypted, encrypt_key or ""), "the decrypted callback")


def signature(timestamp: str, nonce: str, encrypt_key: str, raw_body: bytes) -> str:
    """Feishu's `X-Lark-Signature`: lowercase hex SHA-256 over the exact received bytes."""
    head = (timestamp + nonce + encrypt_key).encode("utf-8")
    return hashlib.sha256(head + raw_body).hexdigest()


def legacy_signature(timestamp: str, nonce: str, verification_token: str, raw_body: bytes) -> str:
    """The old-style card callback (`card.action.trigger_v1`): SHA-1 with the Verification Token."""
    head = (timestamp + nonce + verification_token).encode("utf-8")
    return hashlib.sha1(head + raw_body).hexdigest()


def verify_signature(
    timestamp: str, nonce: str, encrypt_key: str, raw_body: bytes, received: str | None
) -> None:
    """Raise CallbackError unless `received` is the signature of this body."""
    if not received:
        raise CallbackError("no_signature", "the X-Lark-Signature header is missing")
    expected = signature(timestamp, nonce, encrypt_key, raw_body)
    # compare bytes: compare_digest refuses non-ASCII str, and a header may carry anything
    if not hmac.compare_digest(expected.encode(), received.strip().lower().encode()):
        raise CallbackError("bad_signature", "X-Lark-Signature does not match the body")


def check_timestamp(timestamp: str | None, now: float, max_age: float = MAX_AGE_SECONDS) -> None:
    """Raise CallbackError unless `timestamp` (Unix seconds) is within max_age of `now`."""
    value = (timestamp or "").strip()
    if not value.isdigit() or not value.isascii():
        raise CallbackError(
            "bad_timestamp", f"the request timestamp {value[:20]!r} is not Unix seconds"
        )
    skew = now - int(value)
    if abs(skew) > max_age:
        when = "old" if skew > 0 else "in the future"
        detail = f"the request timestamp is {abs(skew):.0f}s {when}: more than {max_age:g}s"
        raise CallbackError("stale", detail)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CallbackError("not_json", f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise CallbackError("not_json", f"{what} is not a JSON object")
    return value
