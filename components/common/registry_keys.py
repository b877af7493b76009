"""One generic registry of named implementations (losses today; anything keyed by config tomorrow).

Not to be confused with ``registry.py``, the MLflow model registry module.

Usage::

    LOSSES = KeyRegistry("loss")

    @LOSSES.register("kl")
    def kl(...): ...

    LOSSES.get("kl")      # the function; an unknown key raises naming it and the known keys
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryKeyError(KeyError):
    """An unknown or duplicate registry key."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class KeyRegistry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if key in self._items:
                raise RegistryKeyError(f"duplicate {self.kind} key {key!r}: already registered")
            self._items[key] = item
            return item

        return add

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
