"""The built-in table of file extensions to media types, independent of the platform.

Values are those Express 5 gives (npm mime-types 3 over mime-db 1.54, where an extension listed
under several types goes to the highest mime-score: a registered type over an ``x-`` one, a
``video/`` over an ``application/`` one), for the extensions a web server commonly serves: web
text, scripts and data, images, fonts, audio, video, archives and documents. Python's own
``mimetypes`` is not consulted: it reads the operating system's mime.types and its built-in
defaults change between Python versions (``.js``, ``.mjs``, ``.md``, ``.avif``, ``.ico``...).
An extension not listed here has no type (callers use ``application/octet-stream``).
"""

from __future__ import annotations

__all__ = ["lookup_extension"]

# One media type per line, then its extensions (the layout of an Apache mime.types file).
_TABLE = """
application/atom+xml atom
application/dash+xml mpd
application/epub+zip epub
application/geo+json geojson
application/gpx+xml gpx
application/gzip gz
application/java-archive jar war ear
application/json json map
application/json5 json5
application/ld+json jsonld
application/manifest+json webmanifest
application/msword doc dot
application/node cjs
application/octet-stream bin
application/pdf pdf
application/postscript ps eps ai
application/rdf+xml rdf owl
application/rss+xml rss
application/rtf rtf
application/toml toml
application/vnd.android.package-archive apk
application/vnd.apple.mpegurl m3u8
application/vnd.google-earth.kml+xml kml
application/vnd.google-earth.kmz kmz
application/vnd.ms-excel xls
application/vnd.ms-fontobject eot
application/vnd.ms-powerpoint ppt pps pot
application/vnd.oasis.opendocument.graphics odg
application/vnd.oasis.opendocument.presentation odp
application/vnd.oasis.opendocument.spreadsheet ods
application/vnd.oasis.opendocument.text odt
application/vnd.openxmlformats-officedocument.presentationml.presentation pptx
application/vnd.openxmlformats-officedocument.spreadsheetml.sheet xlsx
application/vnd.openxmlformats-officedocument.wordprocessingml.document docx
application/vnd.rar rar
application/wasm wasm
application/x-7z-compressed 7z
application/x-bzip bz
application/x-bzip2 bz2 boz
application/x-csh csh
application/x-httpd-php php
application/x-perl pl pm
application/x-sh sh
application/x-shockwave-flash swf
application/x-tar tar
application/x-xz xz
application/xhtml+xml xhtml xht
application/xml xml xsl xsd rng
application/xml-dtd dtd
application/xslt+xml xslt
application/yaml yaml yml
application/zip zip
audio/aac aac adts
audio/amr amr
audio/flac flac
audio/midi mid midi kar rmi
audio/mp4 m4a mp4a
audio/mpeg mp3 mpga mp2 mp2a m2a m3a
audio/ogg ogg oga spx opus
audio/wav wav
audio/webm weba
audio/x-aiff aif aiff aifc
audio/x-caf caf
audio/x-ms-wma wma
font/collection ttc
font/otf otf
font/ttf ttf
font/woff woff
font/woff2 woff2
image/apng apng
image/avif avif
image/bmp bmp
image/gif gif
image/heic heic
image/heic-sequence heics
image/heif heif
image/heif-sequence heifs
image/jp2 jp2 jpg2
image/jpeg jpg jpeg jpe
image/jxl jxl
image/ktx2 ktx2
image/png png
image/svg+xml svg svgz
image/tiff tif tiff
image/vnd.adobe.photoshop psd
image/vnd.microsoft.icon ico
image/vnd.ms-dds dds
image/webp webp
message/rfc822 eml mime
text/cache-manifest appcache manifest
text/calendar ics ifb
text/coffeescript coffee litcoffee
text/css css
text/csv csv
text/html html htm shtml
text/javascript js mjs
text/jsx jsx
text/less less
text/markdown md markdown
text/mdx mdx
text/plain txt text conf def list log in ini
text/stylus styl stylus
text/tab-separated-values tsv
text/vcard vcard
text/vtt vtt
text/x-c c cc cxx cpp h hh dic
text/x-handlebars-template hbs
text/x-java-source java
text/x-sass sass
text/x-scss scss
text/x-vcard vcf
video/3gpp 3gp 3gpp
video/3gpp2 3g2
video/mp2t ts m2t m2ts mts
video/mp4 mp4 mp4v mpg4
video/mpeg mpeg mpg mpe m1v m2v
video/ogg ogv
video/quicktime mov qt
video/webm webm
video/x-flv flv
video/x-m4v m4v
video/x-matroska mkv mk3d mks
video/x-ms-wmv wmv
video/x-msvideo avi
"""


def _parse(table: str) -> dict[str, str]:
    types: dict[str, str] = {}
    for line in table.strip().splitlines():
        media_type, *extensions = line.split()
        for ext in extensions:
            types[ext] = media_type
    return types


_TYPES = _parse(_TABLE)


def lookup_extension(ext: str) -> str | None:
    """Return the media type of a lowercase extension without its dot, or ``None``.

    Args:
        ext: for example ``"json"`` or ``"woff2"``.

    Returns:
        For example ``"application/json"``; ``None`` for an extension not in the table.
    """
    return _TYPES.get(ext)
