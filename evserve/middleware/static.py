"""``static(root)``: serve the files below a directory, through the shared send core.

Mount it on a prefix (``app.use("/static", static("public"))``); it serves ``req.path``, which
is relative to the mount. The path rules, headers, ranges and conditional requests are those
of ``evserve.middleware.send`` (SPEC sections 5 and 8).

With ``extensions`` (serve-static's option), a URL whose file does not exist tries the same
URL with each extension added, in order (``/about`` serves ``about.html``), as ``send`` does:
only when the file is missing (ENOENT), the last segment has no extension and the URL does not
end in ``/``. Each candidate is an ordinary URL path through the same checks (dotfiles, root
containment, symbolic links, NUL); a candidate that is a directory is skipped.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote

from evserve.errors import HTTPError
from evserve.middleware.send import SendOptions, SetHeaders, serve_url_path
from evserve.request import origin_form

if TYPE_CHECKING:
    from evserve.request import Request
    from evserve.response import HeaderValue, Response

__all__ = ["static"]

Middleware = Callable[["Request", "Response", Callable[..., None]], None]


def _extension_list(extensions: str | Sequence[str] | Literal[False] | None) -> tuple[str, ...]:
    """The ``extensions`` option as URL-ready suffixes (``".html"``); a leading dot is optional.

    Raises:
        TypeError: neither None, False, a str nor a sequence of str.
        ValueError: an empty name, or one with a dot first or a path separator or NUL in it.
    """
    if extensions is None or extensions is False:
        return ()
    try:
        names = [extensions] if isinstance(extensions, str) else list(extensions)
    except TypeError:
        raise TypeError(
            f"extensions must be a list of extensions such as ['html'], not {extensions!r}"
        ) from None
    suffixes = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"extensions must be str, not {type(name).__name__}")
        ext = name[1:] if name.startswith(".") else name
        if not ext or ext.startswith(".") or "/" in ext or "\\" in ext or "\x00" in ext:
            raise ValueError(f"extensions must be plain extensions such as 'html', not {name!r}")
        suffixes.append("." + quote(ext, safe=""))  # percent-encoded: the URL path is
    return tuple(suffixes)


def _is_missing(err: HTTPError) -> bool:
    """A 404 because nothing exists at the path (send tries extensions only for ENOENT)."""
    cause = err.__cause__
    return err.status == 404 and isinstance(cause, OSError) and cause.errno == errno.ENOENT


def _takes_extension(url_path: str) -> bool:
    """The URL names no directory (no final ``/``) and its last segment has no extension
    (like Node's ``path.extname``: ``.bashrc`` and ``README`` have none)."""
    if not url_path or url_path.endswith("/"):
        return False
    last = unquote(url_path[url_path.rfind("/") + 1 :])
    return last not in ("", ".", "..") and last.rfind(".") <= 0


def static(
    root: str | os.PathLike[str],
    index: str | Sequence[str] | bool | None = "index.html",
    dotfiles: str = "ignore",
    etag: bool = True,
    last_modified: bool = True,
    max_age: float = 0,
    fallthrough: bool = True,
    follow_symlinks: bool = False,
    redirect: bool = True,
    immutable: bool = False,
    headers: Mapping[str, HeaderValue] | None = None,
    accept_ranges: bool = True,
    cache_control: bool = True,
    set_headers: SetHeaders | None = None,
    extensions: str | Sequence[str] | Literal[False] | None = None,
) -> Middleware:
    """Return middleware ``(req, res, next)`` serving the files below ``root``.

    Args:
        root: the directory to serve (made absolute now, against the current directory).
        index: the file(s) sent for a directory URL ending in ``/``; ``False`` or ``None``
            for none (such a URL is then 404).
        dotfiles: ``"ignore"`` (404), ``"deny"`` (403) or ``"allow"`` for paths with a
            segment starting with ``.``.
        etag, last_modified, accept_ranges, cache_control: send those headers.
        max_age: seconds for ``Cache-Control: public, max-age=N`` (default 0, capped at a year).
        fallthrough: a missing file (404) and a method other than GET/HEAD go on with
            ``next()``; without it they are errors (404, and 405 with ``Allow: GET, HEAD``).
            Other errors (400, 403, 412, 500) always go to ``next(err)``.
        follow_symlinks: False refuses every symbolic link below ``root`` (404); True follows
            links that stay inside ``root`` (others 403).
        redirect: a directory without its trailing slash is a 301 to the slashed URL (query
            kept); without it, 404.
        immutable: add ``immutable`` to Cache-Control.
        headers: extra headers on every file response (they win over the computed ones).
        set_headers: ``fn(res, path, stat_result)`` called for each file before its headers
            are completed (what it sets wins).
        extensions: file extensions (``["html", "htm"]``) tried in order when the file is
            missing, the URL has no extension and no trailing slash: ``/about`` serves
            ``about.html``. None or False (default): off.

    Raises:
        TypeError, ValueError: a bad option (at construction, not per request).
    """
    root_dir = os.path.abspath(os.fspath(root))
    options = SendOptions(
        max_age=max_age, headers=headers, dotfiles=dotfiles, etag=etag,
        last_modified=last_modified, accept_ranges=accept_ranges, cache_control=cache_control,
        immutable=immutable, follow_symlinks=follow_symlinks, index=index,
        set_headers=set_headers,
    )
    suffixes = _extension_list(extensions)
    not_allowed_headers = {"Allow": "GET, HEAD"}

    def serve_static(req: Request, res: Response, next_: Callable[..., None]) -> None:
        method = req.method
        if method != "GET" and method != "HEAD":
            if fallthrough:
                next_()
            else:
                next_(HTTPError(405, headers=not_allowed_headers))
            return
        path = req.path
        if path == "/" or not path:
            # The mount point itself: "/static" must redirect to "/static/" like a directory.
            original = origin_form(req.original_url)
            q = original.find("?")
            if not (original if q < 0 else original[:q]).endswith("/"):
                path = ""
        err = serve_url_path(req, res, root_dir, path, options, redirect=redirect)
        if err is None:
            return
        if suffixes and _is_missing(err) and _takes_extension(path):
            for suffix in suffixes:
                # Nothing was sent for a 404; redirect=False makes a directory a 404 (skipped).
                found = serve_url_path(req, res, root_dir, path + suffix, options, redirect=False)
                if found is None:
                    return
                if found.status != 404:
                    err = found
                    break
        if err.status == 404 and fallthrough:
            next_()
        else:
            next_(err)

    serve_static.__qualname__ = f"static({os.fspath(root)!r})"
    return serve_static
