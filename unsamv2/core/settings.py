"""Reading a settings dataclass from a config section or a ``--settings`` JSON object, with errors naming keys."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["settings_from_json", "settings_from_mapping"]

T = TypeVar("T")


def settings_from_mapping(cls: type[T], section: str, values: Mapping[str, Any]) -> T:
    """``cls(**values)``; a non-mapping or an unknown key (a typo must not fall back to a default silently) is a
    ``ValueError`` naming the config section and the keys."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{section} settings must be a mapping, got {type(values).__name__}")  # noqa: TRY004
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {section} config key(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return cls(**values)


def settings_from_json(cls: type[T], section: str, text: str | None) -> T:
    """Parse a ``--settings`` JSON object into ``cls`` (empty or ``None`` = all defaults)."""
    if not text:
        return cls()
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--settings is not valid JSON: {exc}") from exc
    return settings_from_mapping(cls, section, values)
