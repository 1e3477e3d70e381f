"""Config printed for people: every secret masked, whatever its key."""

from __future__ import annotations

from typing import Any

import yaml

SECRET_KEYS = ("webhook", "secret", "bearer_token", "password", "redis_url")


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if key in SECRET_KEYS and value is not None:
        return "<secret>"
    return value


def masked_yaml(data: Any) -> str:
    """YAML of the merged config with secret values shown as <secret>; *_file paths stay."""
    return yaml.safe_dump(_mask(data), allow_unicode=True, sort_keys=False)
