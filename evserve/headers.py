"""Case-insensitive, order-keeping, multi-valued request header collection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Headers"]


class Headers(Mapping[str, str]):
    """Request headers: names lowercased, every line kept in the order it was received.

    ``headers["Accept"]`` and ``get`` give the value, with repeated lines joined by ``", "``
    (RFC 9110 section 5.3; Cookie lines by ``"; "``, as they are no comma list); ``get_all`` gives each line's value separately; ``items()`` yields
    every ``(name, value)`` line in received order. Lookups ignore case.
    """

    __slots__ = ("_index", "_items")

    def __init__(
        self,
        items: Iterable[tuple[str, str]] = (),
        index: dict[str, str] | None = None,
    ) -> None:
        """Build from ``(name, value)`` pairs; names are lowercased.

        ``index`` is the joined-value dictionary when the caller (the parser) already built it;
        it must then agree with ``items`` and ``items`` must already be lowercased.
        """
        if index is not None and isinstance(items, list):
            self._items: list[tuple[str, str]] = items
            self._index: dict[str, str] = index
            return
        pairs = [(str(n).lower(), str(v)) for n, v in items]
        joined: dict[str, str] = {}
        for name, value in pairs:
            old = joined.get(name)
            if old is None:
                joined[name] = value
            else:
                joined[name] = f"{old}; {value}" if name == "cookie" else f"{old}, {value}"
        self._items = pairs
        self._index = joined

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """Return the value of ``name`` (repeated lines joined by ``", "``), or ``default``."""
        return self._index.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Return the value of every line named ``name``, in received order (empty if none)."""
        key = name.lower()
        return [v for n, v in self._items if n == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Return every ``(name, value)`` line in received order (names lowercased)."""
        return list(self._items)

    def raw_items(self) -> list[tuple[str, str]]:
        """Like ``items`` but without copying: the caller must not modify the list."""
        return self._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._index) == {str(k).lower(): v for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
