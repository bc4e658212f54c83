"""Case-insensitive, order-keeping, multi-valued, immutable request header collection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

__all__ = ["Headers"]


class Headers(Mapping[str, str]):
    """Request headers: names lowercased, every line kept in the order it was received.

    ``headers["Accept"]`` and ``get`` give the value, with repeated lines joined by ``", "``
    (RFC 9110 section 5.3; Cookie lines by ``"; "``, as they are no comma list); ``get_all``
    gives each line's value separately; ``items()`` yields every ``(name, value)`` line in
    received order. Lookups ignore case.

    A ``Headers`` cannot be changed once built (its attributes cannot be set, no method changes
    it, and what its methods return is either a copy or immutable), so one may be shared by
    requests whose heads are the same, and handlers may keep it.

    Attributes:
        lowered: the values by lowercase name, read-only: ``get`` and ``in`` without the case
            folding, for a caller that already holds a lowercase name
            (``"content-length" in h.lowered``); a name with an uppercase letter is never found.
    """

    __slots__ = ("_items", "lowered")

    def __init__(
        self,
        items: Iterable[tuple[str, str]] = (),
        index: Mapping[str, str] | None = None,
    ) -> None:
        """Build from ``(name, value)`` pairs; names are lowercased.

        ``index`` is the joined-value dictionary when the caller (the parser) already built it;
        it must then agree with ``items``, ``items`` must already be lowercased, and the caller
        must not change ``index`` afterwards (it is kept, behind a read-only view, not copied).
        """
        if index is not None:
            _set_items(self, items if type(items) is tuple else tuple(items))
            _set_lowered(self, index if type(index) is MappingProxyType else MappingProxyType(index))
            return
        pairs = tuple((str(n).lower(), str(v)) for n, v in items)
        joined: dict[str, str] = {}
        for name, value in pairs:
            old = joined.get(name)
            if old is None:
                joined[name] = value
            else:
                joined[name] = f"{old}; {value}" if name == "cookie" else f"{old}, {value}"
        _set_items(self, pairs)
        _set_lowered(self, MappingProxyType(joined))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Headers cannot be changed (setting {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Headers cannot be changed (deleting {name!r})")

    _items: tuple[tuple[str, str], ...]
    lowered: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        return self.lowered[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """Return the value of ``name`` (repeated lines joined by ``", "``), or ``default``."""
        return self.lowered.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Return the value of every line named ``name``, in received order (empty if none)."""
        key = name.lower()
        return [v for n, v in self._items if n == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.lowered

    def __iter__(self) -> Iterator[str]:
        return iter(self.lowered)

    def __len__(self) -> int:
        return len(self.lowered)


    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Return every ``(name, value)`` line in received order (names lowercased)."""
        return list(self._items)

    def raw_items(self) -> tuple[tuple[str, str], ...]:
        """Like ``items`` but without copying: the lines themselves, as an immutable tuple."""
        return self._items

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self.lowered) == {str(k).lower(): v for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


# The slots are filled through their descriptors, past __setattr__ (which refuses every change).
_set_items = Headers.__dict__["_items"].__set__
_set_lowered = Headers.__dict__["lowered"].__set__
