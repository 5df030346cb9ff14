"""Finds strategies by name. A new strategy is a new module in this package that uses ``@register``."""

from __future__ import annotations

import importlib
import pkgutil

from strategies.base import Strategy

_REGISTRY: dict[str, type[Strategy]] = {}
_NOT_STRATEGIES = {"base", "registry", "indicators", "walk_forward", "walk_forward_report"}
_loaded = False


def register(cls: type[Strategy]) -> type[Strategy]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    import strategies

    for info in pkgutil.iter_modules(strategies.__path__):
        if info.name not in _NOT_STRATEGIES and not info.name.startswith("_"):
            importlib.import_module(f"strategies.{info.name}")
    _loaded = True


def available() -> dict[str, type[Strategy]]:
    _load_all()
    return dict(_REGISTRY)


def shipped() -> dict[str, type[Strategy]]:
    """The strategies defined in this package (not those a test or a notebook registered)."""
    return {name: cls for name, cls in available().items() if cls.__module__.startswith("strategies.")}


def get(name: str) -> type[Strategy]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def create(name: str, params: dict | None = None) -> Strategy:
    return get(name)(params)
