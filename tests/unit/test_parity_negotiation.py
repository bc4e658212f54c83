"""Express 5 parity in negotiation: the built-in MIME table (independent of the platform's and
of the Python version's) and negotiator's preference lists (req.accepts() with no offers)."""

from __future__ import annotations

import mimetypes

import pytest

from evserve.negotiation import (
    accepts,
    accepts_charsets_list,
    accepts_encodings_list,
    accepts_languages_list,
    accepts_list,
    content_type_for,
    is_type,
    mime_type,
)

# Extension -> Content-Type as Express 5 sets it (res.type, res.sendFile, express.static): npm
# mime-types 3 over mime-db, "; charset=utf-8" where mime-types' contentType() adds it. Many of
# these differ between Python versions' mimetypes or the OS's mime.types.
EXPRESS_TYPES: dict[str, str] = {
    "html": "text/html; charset=utf-8",
    "htm": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "mjs": "text/javascript; charset=utf-8",
    "cjs": "application/node",
    "json": "application/json; charset=utf-8",
    "map": "application/json; charset=utf-8",
    "jsonld": "application/ld+json",
    "webmanifest": "application/manifest+json; charset=utf-8",
    "wasm": "application/wasm",
    "md": "text/markdown; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "log": "text/plain; charset=utf-8",
    "ics": "text/calendar; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "xml": "application/xml",
    "xsl": "application/xml",
    "xhtml": "application/xhtml+xml",
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "yaml": "application/yaml",
    "yml": "application/yaml",
    "rtf": "application/rtf",
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "svg": "image/svg+xml",
    "ico": "image/vnd.microsoft.icon",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "apng": "image/apng",
    "heic": "image/heic",
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "eot": "application/vnd.ms-fontobject",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "weba": "audio/webm",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "ogv": "video/ogg",
    "mov": "video/quicktime",
    "mpeg": "video/mpeg",
    "avi": "video/x-msvideo",
    "ts": "video/mp2t",
    "m3u8": "application/vnd.apple.mpegurl",
    "zip": "application/zip",
    "gz": "application/gzip",
    "tar": "application/x-tar",
    "7z": "application/x-7z-compressed",
    "rar": "application/vnd.rar",
    "bz2": "application/x-bzip2",
    "jar": "application/java-archive",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "epub": "application/epub+zip",
    "bin": "application/octet-stream",
}


@pytest.mark.parametrize(("ext", "expected"), sorted(EXPRESS_TYPES.items()))
def test_common_extensions_get_expresss_types(ext: str, expected: str) -> None:
    assert content_type_for(ext) == expected
    assert content_type_for("." + ext) == expected
    assert content_type_for("file." + ext.upper()) == expected
    assert mime_type(ext) == expected.split(";", 1)[0]


@pytest.mark.parametrize("ext", ["pyc", "nosuchext", "", "README"])
def test_an_extension_not_in_the_table_is_octet_stream(ext: str) -> None:
    # Not the platform's guess either (Python knows .pyc): the same answer everywhere.
    assert content_type_for(ext) == "application/octet-stream"


@pytest.fixture
def poisoned_mimetypes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Python's mimetypes answer wrongly for everything, however it is asked."""
    wrong = "application/x-poisoned"

    def guess_type(url: object, strict: bool = True) -> tuple[str, None]:
        return wrong, None

    table = {"." + ext: wrong for ext in EXPRESS_TYPES}
    monkeypatch.setattr(mimetypes, "guess_type", guess_type)
    monkeypatch.setattr(mimetypes, "types_map", dict(table))
    monkeypatch.setattr(mimetypes, "common_types", dict(table))
    monkeypatch.setattr(mimetypes, "_types_map_default", dict(table), raising=False)
    monkeypatch.setattr(mimetypes, "_common_types_default", dict(table), raising=False)

    class PoisonedMimeTypes(mimetypes.MimeTypes):
        def guess_type(self, url: object, strict: bool = True) -> tuple[str, None]:  # type: ignore[override]
            return wrong, None

    monkeypatch.setattr(mimetypes, "MimeTypes", PoisonedMimeTypes)


@pytest.mark.usefixtures("poisoned_mimetypes")
def test_types_do_not_come_from_the_platform() -> None:
    assert mimetypes.guess_type("a.json")[0] == "application/x-poisoned"
    for ext, expected in EXPRESS_TYPES.items():
        assert content_type_for(ext) == expected, ext
    # The same table serves req.accepts("html") and req.is_type("json").
    assert accepts("text/html", ["json", "html"]) == "html"
    assert accepts("application/wasm", ["wasm"]) == "wasm"
    assert is_type("application/json; charset=utf-8", ["json"]) == "json"
    assert is_type("text/javascript", ["mjs"]) == "mjs"
    assert content_type_for("nosuchext") == "application/octet-stream"


# -- negotiator's lists (Express 5: req.accepts() and its siblings with no arguments) --------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ["*/*"]),
        ("", []),
        ("text/html, application/json;q=0.9, */*;q=0.1", ["text/html", "application/json", "*/*"]),
        ("application/json;q=0.5, text/html", ["text/html", "application/json"]),
        ("Text/HTML;level=1", ["Text/HTML"]),
        ("a/b;q=0, c/d;q=0.5, e/f;q=0.5", ["c/d", "e/f"]),
    ],
)
def test_media_type_list(header: str | None, expected: list[str]) -> None:
    assert accepts_list(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ["*"]),
        ("", []),
        ("utf-8, iso-8859-1;q=0.2, utf-7;q=0.5", ["utf-8", "utf-7", "iso-8859-1"]),
        ("UTF-8;q=0, latin1", ["latin1"]),
    ],
)
def test_charset_list(header: str | None, expected: list[str]) -> None:
    assert accepts_charsets_list(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ["identity"]),
        ("", ["identity"]),
        ("gzip, deflate", ["gzip", "deflate", "identity"]),
        ("gzip;q=0.8, br", ["br", "gzip", "identity"]),  # identity takes the lowest q, last
        ("gzip, identity;q=0", ["gzip"]),
        ("gzip, *;q=0.1", ["gzip", "*"]),  # "*" covers identity: none added
        ("gzip;q=0, br;q=0.5", ["br", "identity"]),
    ],
)
def test_encoding_list(header: str | None, expected: list[str]) -> None:
    assert accepts_encodings_list(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ["*"]),
        ("", []),
        ("en;q=0.8, es, pt", ["es", "pt", "en"]),
        ("en-US, fr-CA;q=0.5, *;q=0.1", ["en-US", "fr-CA", "*"]),
        ("de;q=0", []),
    ],
)
def test_language_list(header: str | None, expected: list[str]) -> None:
    assert accepts_languages_list(header) == expected
