"""Server configuration: one frozen dataclass whose fields carry unit, default and validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Config"]


def _seconds(default: float, doc: str) -> Any:
    return field(default=default, metadata={"unit": "seconds", "doc": doc})


def _optional_seconds(doc: str) -> Any:
    return field(default=None, metadata={"unit": "seconds", "doc": doc, "optional": True})


def _count(default: int, doc: str, unit: str = "count") -> Any:
    return field(default=default, metadata={"unit": unit, "doc": doc})


@dataclass(frozen=True, slots=True)
class Config:
    """Limits and timeouts of a server; every field has a default (SPEC section 6).

    Timeouts are deadlines counted from the start of the state they guard, not idle timers that
    each received byte resets. Build with ``Config(**kwargs)``: an unknown key raises
    ``TypeError`` and an out-of-range value ``ValueError``.
    """

    keepalive_timeout: float = _seconds(5.0, "idle time allowed between two requests")
    header_timeout: float = _seconds(10.0, "time to receive a whole request head, from its first byte (from the accept for a new connection)")
    body_timeout: float = _seconds(30.0, "time to receive a whole request body, from the end of the head")
    write_timeout: float = _seconds(30.0, "time the peer may leave pending output unread")
    graceful_timeout: float = _seconds(10.0, "time in-flight requests get to finish at shutdown")
    handler_timeout: float | None = _optional_seconds(
        "time the application may hold a request without starting its response (503 and a log "
        "line beyond); None: no limit"
    )
    max_header_size: int = _count(16384, "bytes of header lines after the request line (431 beyond)", "bytes")
    max_headers: int = _count(100, "header lines per request (431 beyond)")
    max_target_size: int = _count(8192, "bytes of request-target (414 beyond)", "bytes")
    max_body_size: int = _count(1048576, "bytes of request body (413 beyond)", "bytes")
    max_connections: int = _count(10000, "open connections; accepting pauses at this count")
    backlog: int = _count(1024, "listen() backlog of the listening socket")
    workers: int = _count(1, "pre-forked processes sharing the listening port")
    write_buffer_size: int = _count(
        65536, "high-water mark of unsent output: reading pauses and write() says wait above it", "bytes"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["unit"] == "seconds":
                if value is None and f.metadata.get("optional"):
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"{f.name} must be a number of seconds, not {value!r}")
                if not value > 0:
                    raise ValueError(f"{f.name} must be > 0 seconds, not {value!r}")
                object.__setattr__(self, f.name, float(value))
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{f.name} must be an int, not {value!r}")
                if value < 1:
                    raise ValueError(f"{f.name} must be >= 1, not {value!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Config:
        """Build from keyword arguments, with a clear ``TypeError`` for an unknown key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown server setting(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**kwargs)

    @classmethod
    def describe(cls) -> list[tuple[str, str, object, str]]:
        """``(name, unit, default, description)`` for every setting (used by docs and the CLI)."""
        return [
            (f.name, f.metadata["unit"], f.default, f.metadata["doc"]) for f in dataclasses.fields(cls)
        ]
