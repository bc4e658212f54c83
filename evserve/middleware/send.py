"""The one file-sending core behind ``static()``, ``res.send_file`` and ``res.download``.

It owns, for both callers:

* safe resolution of a path below a root: one percent-decoding of URL paths (400 on a malformed
  escape or invalid UTF-8), NUL refused (400), ``..``, backslashes and encoded separators refused
  (403), dotfiles by policy, and symbolic links refused at *every* component (404) unless
  ``follow_symlinks`` - and even then never to a target outside the root (403);
* the response: Content-Type by extension, a weak ETag from size and mtime_ns, Last-Modified,
  Cache-Control, preconditions (412), conditional GET (304, RFC 9110 section 13), single
  ranges (206) and multiple ranges (206 ``multipart/byteranges``; more than
  ``byteranges.MAX_RANGES`` (50) or overlapping ranges get the whole body with 200), If-Range, HEAD;
* a zero-copy body: the open file goes to ``res.write_file`` (``os.sendfile`` in the
  transport) with Content-Length framing, so the reactor never reads a file into memory (but
  for a part no larger than ``write_buffer_size`` that must wait behind other output: the
  transport reads it then rather than keep its file open).

Opening is race-free where the OS allows it: with ``follow_symlinks=False`` the path is walked
one component at a time with ``openat(dir_fd, name, O_NOFOLLOW)``, so a link swapped in between
a check and the open cannot lead out of the root. Files are opened ``O_NONBLOCK`` so a FIFO
cannot stall the reactor; anything but a regular file (or a directory with an index) is 404.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote_to_bytes

from evserve.errors import HTTPError
from evserve.freshness import etag_matches, is_fresh, parse_http_date
from evserve.middleware.byteranges import if_range_matches, multipart_frames, parse_range
from evserve.negotiation import content_type_for
from evserve.request import origin_form

if TYPE_CHECKING:
    from evserve.request import Request
    from evserve.response import HeaderValue, Response

__all__ = ["MAX_MAX_AGE", "SendOptions", "send_file", "serve_url_path"]

MAX_MAX_AGE = 365 * 24 * 3600  # seconds; Cache-Control max-age is capped at one year, as in send

Callback = Callable[[BaseException | None], object]
SetHeaders = Callable[["Response", str, os.stat_result], object]

_DEFAULT_TYPE = "application/octet-stream"
_O_FILE = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the reactor in open()
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_AT = _O_NOFOLLOW != 0 and os.open in os.supports_dir_fd
_NOT_FOUND_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO,
     getattr(errno, "EMLINK", errno.ENOENT)}  # FreeBSD's O_NOFOLLOW answer for a link
)
_FORBIDDEN_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DOTFILES = ("allow", "deny", "ignore")
_WINDOWS = os.name == "nt"


class SendOptions:
    """The options of one sender, checked and pre-computed once (per ``static()``, per call of
    ``send_file``). Arguments are those of :func:`send_file`.

    Raises:
        ValueError: an unknown ``dotfiles`` mode, a bad ``index`` name or ``max_age``.
        TypeError: a ``max_age`` that is not a number.
    """

    __slots__ = (
        "accept_ranges",
        "cache_control",
        "dotfiles",
        "etag",
        "follow_symlinks",
        "headers",
        "index",
        "last_modified",
        "set_headers",
    )

    def __init__(
        self,
        *,
        max_age: float = 0,
        headers: Mapping[str, HeaderValue] | None = None,
        dotfiles: str = "ignore",
        etag: bool = True,
        last_modified: bool = True,
        accept_ranges: bool = True,
        cache_control: bool = True,
        immutable: bool = False,
        follow_symlinks: bool = False,
        index: str | Sequence[str] | bool | None = None,
        set_headers: SetHeaders | None = None,
    ) -> None:
        if dotfiles not in _DOTFILES:
            raise ValueError(f"dotfiles must be one of {', '.join(_DOTFILES)}, not {dotfiles!r}")
        if isinstance(max_age, bool) or not isinstance(max_age, (int, float)):
            raise TypeError(f"max_age must be a number of seconds, not {type(max_age).__name__}")
        if max_age != max_age:  # NaN
            raise ValueError("max_age must be a number of seconds, not NaN")
        seconds = int(min(max(0.0, float(max_age)), MAX_MAX_AGE))
        self.dotfiles = dotfiles
        self.etag = bool(etag)
        self.last_modified = bool(last_modified)
        self.accept_ranges = bool(accept_ranges)
        self.cache_control: str | None = None
        if cache_control:
            self.cache_control = f"public, max-age={seconds}" + (", immutable" if immutable else "")
        self.follow_symlinks = bool(follow_symlinks)
        self.headers: tuple[tuple[str, HeaderValue], ...] = tuple((headers or {}).items())
        self.index = _index_names(index)
        self.set_headers = set_headers


def _index_names(index: str | Sequence[str] | bool | None) -> tuple[str, ...]:
    if index is None or index is False:
        return ()
    if index is True:
        return ("index.html",)
    names = (index,) if isinstance(index, str) else tuple(index)
    for name in names:
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
                or "\\" in name or "\x00" in name:
            raise ValueError(f"index names must be plain file names, not {name!r}")
    return names


class _Target(NamedTuple):
    """Where a request points: the walk starts at ``base`` (trusted, may itself be a link)
    and goes down ``segments`` (each checked)."""

    base: str
    segments: list[str]
    trailing_slash: bool  # the path named a directory ("dir/")
    has_dotfile: bool  # some checked segment starts with "."
    contained: bool = True  # links must not lead out of ``base`` (False: send_file without root)


# -- public entry points -----------------------------------------------------------------------


def send_file(
    req: Request,
    res: Response,
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    max_age: float = 0,
    headers: Mapping[str, HeaderValue] | None = None,
    dotfiles: str = "ignore",
    etag: bool = True,
    last_modified: bool = True,
    accept_ranges: bool = True,
    cache_control: bool = True,
    immutable: bool = False,
    follow_symlinks: bool = False,
    index: str | Sequence[str] | bool | None = None,
    set_headers: SetHeaders | None = None,
    callback: Callback | None = None,
) -> None:
    """Send the file at the filesystem ``path`` as the response (``res.send_file``).

    Args:
        req, res: the request and its (not yet sent) response.
        path: a filesystem path (never percent-decoded). Without ``root`` it must be absolute;
            with ``root`` it is taken below ``root`` whatever its form (``/a`` means
            ``root/a``). ``..`` segments and backslashes are refused with 403 either way.
        root: the directory the file must be in; symlink and dotfile checks start below it.
        max_age: seconds for ``Cache-Control: public, max-age=N`` (capped at one year).
        headers: headers set first; a header set here or earlier on ``res`` (Content-Type,
            ETag, Last-Modified, Cache-Control, Accept-Ranges) is not replaced.
        dotfiles: ``"ignore"`` (404), ``"deny"`` (403) or ``"allow"`` for a path with a segment
            starting with ``.`` (without ``root``, every segment of the absolute path counts).
        etag, last_modified, accept_ranges, cache_control: send those headers (and honour the
            matching conditional/range requests).
        immutable: add ``immutable`` to Cache-Control.
        follow_symlinks: False refuses every link below ``root`` (without ``root``, the file
            itself) with 404; True follows links whose target stays inside ``root`` (403
            otherwise).
        index: for a directory, the index file name(s) to send; None/False: a directory is 404.
        set_headers: ``fn(res, path, stat_result)`` called after ``headers`` are set and before
            the computed ones (what it sets wins).
        callback: receives the ``HTTPError`` instead of it being raised, or ``None`` once the
            response has been handed to the connection.

    Raises:
        HTTPError: without ``callback``: 400, 403, 404, 412 or 500 (with the ``OSError`` as
            cause). Nothing has been sent then.
        TypeError: a relative ``path`` without ``root``.
    """
    options = SendOptions(
        max_age=max_age, headers=headers, dotfiles=dotfiles, etag=etag,
        last_modified=last_modified, accept_ranges=accept_ranges, cache_control=cache_control,
        immutable=immutable, follow_symlinks=follow_symlinks, index=index,
        set_headers=set_headers,
    )
    try:
        target = _filesystem_target(os.fspath(path), None if root is None else os.fspath(root))
        _serve(req, res, target, options, url_mode=False, redirect=False)
    except HTTPError as err:
        if callback is None:
            raise
        callback(err)
        return
    if callback is not None:
        callback(None)


def serve_url_path(
    req: Request, res: Response, root: str, url_path: str, options: SendOptions, *, redirect: bool = True
) -> HTTPError | None:
    """Serve the (still percent-encoded) URL path ``url_path`` below the absolute ``root``
    (``static``); returns the error to pass on, or None once the response is handed over.

    A directory without its trailing slash is a 301 to the slashed URL (``redirect``) or 404.
    """
    try:
        target = _url_target(root, url_path)
        _serve(req, res, target, options, url_mode=True, redirect=redirect)
    except HTTPError as err:
        return err
    return None


# -- paths ------------------------------------------------------------------------------------


def _decode_segment(raw: str) -> str:
    """Percent-decode one URL path segment, once; 400 on a malformed escape or bad UTF-8."""
    if _BAD_ESCAPE.search(raw) is not None:
        raise HTTPError(400, "Malformed percent-escape in the path")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:  # includes overlong forms such as %C0%AE
        raise HTTPError(400, "The path is not valid UTF-8") from None


def _check_segment(seg: str) -> None:
    if "\x00" in seg:
        raise HTTPError(400, "NUL byte in the path")
    if seg == ".." or "/" in seg or "\\" in seg or (_WINDOWS and ":" in seg):
        raise HTTPError(403)  # traversal, an encoded separator, or a Windows drive/stream


def _url_target(root: str, url_path: str) -> _Target:
    segments: list[str] = []
    has_dotfile = False
    for raw in url_path.split("/"):
        if not raw:
            continue
        seg = _decode_segment(raw) if "%" in raw else raw
        if seg == ".":
            continue
        _check_segment(seg)
        if seg[0] == ".":
            has_dotfile = True
        segments.append(seg)
    return _Target(root, segments, url_path.endswith("/"), has_dotfile)


def _filesystem_target(path: str, root: str | None) -> _Target:
    if "\x00" in path:
        raise HTTPError(400, "NUL byte in the path")
    segments: list[str] = []
    for seg in path.split("/"):
        if not seg or seg == ".":
            continue
        _check_segment(seg)
        segments.append(seg)
    has_dotfile = any(seg[0] == "." for seg in segments)
    trailing = path.endswith("/")
    if root is not None:
        return _Target(os.path.abspath(root), segments, trailing, has_dotfile)
    if not os.path.isabs(path):
        raise TypeError(f"send_file needs an absolute path or a root, not {path!r}")
    # No root: the application chose the directories; only the file itself is checked.
    parent = os.path.join(os.sep, *segments[:-1])
    return _Target(parent, segments[-1:], trailing, has_dotfile, contained=False)


def _os_error(exc: OSError) -> HTTPError:
    """The status of a failed open/stat: missing or a refused link 404, no permission 403,
    anything else (EMFILE, EIO, ...) 500; raised ``from`` the OSError so the log shows it."""
    if exc.errno in _NOT_FOUND_ERRNOS:
        return HTTPError(404)
    if exc.errno in _FORBIDDEN_ERRNOS:
        return HTTPError(403)
    return HTTPError(500)


def _open_walk(base: str, segments: Sequence[str]) -> int:
    """Open ``base/segments...`` refusing a symbolic link at every segment (ELOOP)."""
    if _OPEN_AT:
        fd = os.open(base, _O_FILE)
        try:
            for seg in segments:
                child = os.open(seg, _O_FILE | _O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd
    # Portable fallback (no openat): lstat each component, then open. Racy, but refuses what
    # it sees; platforms with openat never come here.
    path = base
    for seg in segments:
        path = os.path.join(path, seg)
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise OSError(errno.ELOOP, "symbolic link refused", path)
    return os.open(path, _O_FILE | _O_NOFOLLOW)


def _open(base: str, segments: Sequence[str], follow_symlinks: bool, contained: bool) -> int:
    """Open the target; raises HTTPError (404 for links refused, 403 for links leading out)."""
    try:
        if not follow_symlinks:
            return _open_walk(base, segments)
        if not contained:
            return os.open(os.path.join(base, *segments), _O_FILE)
        real_base = os.path.realpath(base)
        real = os.path.realpath(os.path.join(real_base, *segments))
        inside = os.path.join(real_base, "")
        if real != real_base and not real.startswith(inside):
            raise HTTPError(403)
        # Walk the resolved path without following anything: a link swapped in since
        # realpath() looked gives 404 instead of an escape.
        rest = real[len(inside):] if real != real_base else ""
        return _open_walk(real_base, [s for s in rest.split(os.sep) if s])
    except OSError as exc:
        raise _os_error(exc) from exc


def _open_file(target: _Target, options: SendOptions, *,
               url_mode: bool) -> tuple[Any, os.stat_result, list[str]]:
    """Open the regular file the target names (a directory's index if need be); returns the
    binary file object, its stat and its segments below the base (the index included).
    Raises HTTPError; ``_Redirect`` for a directory named without its slash in URL mode."""
    fd = _open(target.base, target.segments, options.follow_symlinks, target.contained)
    try:
        st = os.fstat(fd)
        parts = target.segments
        if stat.S_ISDIR(st.st_mode):
            if url_mode and not target.trailing_slash:
                raise _Redirect
            os.close(fd)
            fd = -1
            for index in options.index:
                parts = [*target.segments, index]
                try:
                    fd = _open(target.base, parts, options.follow_symlinks, target.contained)
                except HTTPError as err:
                    if err.status == 404:
                        continue
                    raise
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    break
                os.close(fd)
                fd = -1
            if fd < 0:
                raise HTTPError(404)
        elif not stat.S_ISREG(st.st_mode) or target.trailing_slash:
            raise HTTPError(404)  # a FIFO, device or socket; or "file.txt/"
        file = open(fd, "rb", buffering=0)  # noqa: SIM115 - handed to res.write_file, which closes it
        fd = -1
        return file, st, parts
    except OSError as exc:
        raise _os_error(exc) from exc
    finally:
        if fd >= 0:
            os.close(fd)


class _Redirect(Exception):
    """A directory was named without its trailing slash (URL mode)."""


# -- the response -----------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


@lru_cache(maxsize=256)
def _type_for_extension(ext: str) -> str:
    return content_type_for(ext) if ext else _DEFAULT_TYPE


def _content_type(name: str) -> str:
    dot = name.rfind(".")
    # Like path.extname: ".bashrc" and "README" have no extension.
    return _type_for_extension(name[dot + 1 :].lower() if dot > 0 else "")


def _serve(req: Request, res: Response, target: _Target, options: SendOptions, *,
           url_mode: bool, redirect: bool) -> None:
    if target.has_dotfile and options.dotfiles != "allow":
        raise HTTPError(403 if options.dotfiles == "deny" else 404)
    try:
        file, st, parts = _open_file(target, options, url_mode=url_mode)
    except _Redirect:
        if not redirect:
            raise HTTPError(404) from None
        _redirect_to_directory(req, res)
        return
    try:
        for header, value in options.headers:
            res.set(header, value)
        if options.set_headers is not None:
            options.set_headers(res, os.path.join(target.base, *parts), st)
        _respond(req, res, file, st, parts[-1] if parts else "", options)
    except BaseException:
        file.close()  # a no-op when res.write_file already took it
        raise


def _redirect_to_directory(req: Request, res: Response) -> None:
    original = origin_form(req.original_url)  # an absolute-form target redirects by its path
    q = original.find("?")
    path, query = (original, "") if q < 0 else (original[:q], original[q:])
    # Collapse leading slashes: "//evil.example" must not become a protocol-relative URL.
    location = "/" + path.lstrip("/") + "/" + query
    res.set("Content-Security-Policy", "default-src 'none'")
    res.set("X-Content-Type-Options", "nosniff")
    res.redirect(location, 301)


def _respond(req: Request, res: Response, file: Any, st: os.stat_result, name: str,
             options: SendOptions) -> None:
    size = st.st_size
    if options.accept_ranges and not res.has("Accept-Ranges"):
        res.set("Accept-Ranges", "bytes")
    if options.cache_control is not None and not res.has("Cache-Control"):
        res.set("Cache-Control", options.cache_control)
    if options.last_modified and not res.has("Last-Modified"):
        res.set("Last-Modified", _http_date(int(st.st_mtime)))
    if options.etag and not res.has("ETag"):
        res.set("ETag", f'W/"{size:x}-{st.st_mtime_ns:x}"')
    etag = res.get("ETag")
    last_modified = res.get("Last-Modified")
    etag_value = etag if isinstance(etag, str) else None
    lm_value = last_modified if isinstance(last_modified, str) else None

    req_headers = req.headers
    method = req.method
    # RFC 9110 section 13.2.2: If-Match, If-Unmodified-Since, If-None-Match,
    # If-Modified-Since, If-Range - in that order.
    if _precondition_failed(req_headers, etag_value, lm_value):
        raise HTTPError(412)
    is_get = method == "GET" or method == "HEAD"
    if is_get and ("if-none-match" in req_headers or "if-modified-since" in req_headers) \
            and is_fresh(req_headers, etag, last_modified):
        file.close()
        for header, _ in res.header_items():
            if header.lower().startswith("content-"):
                res.remove(header)  # RFC 9110 section 15.4.5: no representation headers
        res.status(304).end()
        return

    if not res.has("Content-Type"):
        res.set("Content-Type", _content_type(name))
    ranges: list[tuple[int, int]] | None = None
    range_header = req_headers.get("range") if is_get and options.accept_ranges else None
    if range_header:
        if_range = req_headers.get("if-range")
        if if_range is None or if_range_matches(if_range, etag_value, lm_value):
            ranges = parse_range(range_header, size)
            if ranges is not None and not ranges:
                file.close()
                _not_satisfiable(res, size)
                return

    head_only = method == "HEAD"
    if not ranges:
        _send_segment(res, file, 0, size, head_only)
    elif len(ranges) == 1:
        first, last = ranges[0]
        res.status(206).set("Content-Range", f"bytes {first}-{last}/{size}")
        _send_segment(res, file, first, last - first + 1, head_only)
    else:
        _send_multipart(res, file, ranges, size, head_only)


def _send_segment(res: Response, file: Any, offset: int, count: int, head_only: bool) -> None:
    res.set("Content-Length", count)  # Content-Length framing, never chunked
    if head_only:
        file.close()
        res.flush_headers()
    else:
        res.write_file(file, offset, count)
    res.end()


def _precondition_failed(req_headers: Any, etag: str | None, last_modified: str | None) -> bool:
    if_match = req_headers.get("if-match")
    if if_match is not None:
        # Weak comparison, like send: our validators are weak by design.
        return etag is None or not etag_matches(if_match, etag)
    since = req_headers.get("if-unmodified-since")
    if since is not None:
        limit = parse_http_date(since)
        modified = parse_http_date(last_modified)
        return limit is not None and modified is not None and modified > limit
    return False


def _not_satisfiable(res: Response, size: int) -> None:
    # Answered here rather than raised: RFC 9110 section 15.5.17 wants Content-Range on the
    # 416, which an error page would not keep.
    res.status(416).set("Content-Range", f"bytes */{size}")
    res.type("text/plain").send("Range Not Satisfiable")


class _SharedFile:
    """One open file behind several ``write_file`` segments: closed when the last is done."""

    __slots__ = ("_file", "_refs")

    def __init__(self, file: Any, refs: int) -> None:
        self._file = file
        self._refs = refs

    def fileno(self) -> int:
        return int(self._file.fileno())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._file.seek(offset, whence))

    def read(self, size: int = -1) -> bytes:
        return bytes(self._file.read(size))

    def close(self) -> None:
        self._refs -= 1
        if self._refs <= 0:
            self._file.close()


def _send_multipart(res: Response, file: Any, ranges: list[tuple[int, int]], size: int,
                    head_only: bool) -> None:
    """A 206 ``multipart/byteranges`` body; the parts' data still go out through sendfile."""
    boundary = secrets.token_hex(16)
    heads, tail, length = multipart_frames(boundary, str(res.get("Content-Type")), ranges, size)
    res.status(206).set("Content-Type", f"multipart/byteranges; boundary={boundary}")
    res.set("Content-Length", length)
    if head_only:
        file.close()
        res.flush_headers()
        res.end()
        return
    shared = _SharedFile(file, len(ranges))
    handed = 0
    try:
        for head, (first, last) in zip(heads, ranges, strict=True):
            res.write(head)
            handed += 1
            res.write_file(shared, first, last - first + 1)
    finally:
        for _ in range(len(ranges) - handed):
            shared.close()  # the segments never handed over
    res.end(tail)
