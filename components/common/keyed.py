"""One generic registry of named implementations, chosen by a key from config: losses, student
builders, teacher adapters. What an implementation needs or offers is declared where it is
registered (``register(key, needs=...)``), never in a separate table that can fall out of step.

Not to be confused with ``registry.py``, the MLflow model registry module.

Usage::

    LOSSES = KeyRegistry("loss")

    @LOSSES.register("kl", needs={"logits"})
    def kl(...): ...

    LOSSES.get("kl")            # the function; an unknown key raises naming it and the known keys
    LOSSES.info("kl")["needs"]  # what was declared with it
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryKeyError(KeyError):
    """An unknown or duplicate registry key."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class KeyRegistry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, key: str, **info: Any) -> Callable[[T], T]:
        """Decorator adding `item` under `key`, with `info` (what it needs, what it offers)."""
        def add(item: T) -> T:
            if key in self._items:
                raise RegistryKeyError(f"duplicate {self.kind} key {key!r}: already registered")
            self._items[key] = item
            self._info[key] = dict(info)
            return item

        return add

    def info(self, key: str) -> dict[str, Any]:
        self.get(key)  # an unknown key fails with the registry's message
        return self._info[key]

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def get(self, key: str) -> T:
        try:
            return self._items[key]
        except KeyError:
            raise RegistryKeyError(f"unknown {self.kind} key {key!r}; known: {', '.join(sorted(self._items))}") \
                from None

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return sorted(self._items)
