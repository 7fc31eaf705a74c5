"""Helpers for accepting file uploads as streams: type from content, safe names, multipart.

An upload handler written the obvious way is wrong in three places:

- `await file.read()` (or `await request.body()`) holds the whole upload in memory, and
  Starlette's form parser (`await request.form()`) spools every file to a temporary file first.
  `multipart_file` instead drives python-multipart's push parser with the request's chunks as
  they arrive and hands the file part's bytes on as they come, so memory stays at about one
  incoming chunk however large the file is. What it has to read besides the file (other form
  fields, header lines) has a fixed bound.
- The declared Content-Type is whatever the client says. `sniff` decides the type from the
  leading bytes (`split_head` reads them without losing them from the stream), and
  `declared_type_agrees` only checks that the declaration does not contradict it.
- A user's filename can carry a path (`../../etc/passwd`), CR/LF to inject response headers,
  or a bidi override (U+202E) that makes `evil<U+202E>gnp.exe` display as `evilexe.png`.
  `safe_filename` makes it fit for display, and `content_disposition` builds the download
  header from it. A user's filename is never a storage key.

Everything here is pure: no I/O besides consuming the async iterators it is given.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from keel.errors import BadRequest

# ---------------------------------------------------------------------------------------------
# Type from content

# The longest signature below (WebP: "RIFF", a 4-byte size, "WEBP") ends at byte 12.
SNIFF_BYTES = 12

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    # An archive with no entries is only its end-of-central-directory record.
    (b"PK\x05\x06", "application/zip"),
)

# Declarations that say "I don't know", so they cannot contradict what the bytes say.
_UNKNOWN_DECLARATIONS = frozenset({"", "application/octet-stream"})
# Non-standard names that clients really send for a standard type.
_TYPE_ALIASES = {"image/jpg": "image/jpeg"}


def sniff(head: bytes) -> str | None:
    """The media type of a file from its first `SNIFF_BYTES` bytes, or None if unrecognised."""
    for signature, media_type in _SIGNATURES:
        if head.startswith(signature):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def declared_type_agrees(declared: str | None, sniffed: str) -> bool:
    """Whether a declared Content-Type is consistent with the sniffed type (parameters ignored)."""
    media_type = _media_type(declared or "")
    if media_type in _UNKNOWN_DECLARATIONS:
        return True
    return media_type == _media_type(sniffed)


def _media_type(value: str) -> str:
    media_type = value.split(";", 1)[0].strip().lower()
    return _TYPE_ALIASES.get(media_type, media_type)


# ---------------------------------------------------------------------------------------------
# Head and rest


async def split_head(chunks: AsyncIterator[bytes], size: int) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first `size` bytes of a stream, and a stream of all its bytes from the start.

    Only the chunks that hold the head are read ahead; the returned stream yields them again
    (as they were, not re-joined) and then the rest of the source. Empty chunks are skipped.
    """
    source = aiter(chunks)
    read: list[bytes] = []
    have = 0
    exhausted = False
    while have < size:
        chunk = await anext(source, None)
        if chunk is None:
            exhausted = True
            break
        if chunk:
            read.append(chunk)
            have += len(chunk)
    return _first_bytes(read, size), _replay(read, source, exhausted)


def _first_bytes(chunks: list[bytes], size: int) -> bytes:
    # Joins only the head's bytes, not the whole of the last chunk read.
    pieces: list[bytes] = []
    needed = size
    for chunk in chunks:
        if needed <= 0:
            break
        pieces.append(chunk[:needed])
        needed -= len(chunk)
    return b"".join(pieces)


async def _replay(
    read: list[bytes], source: AsyncIterator[bytes], exhausted: bool
) -> AsyncIterator[bytes]:
    while read:
        # Hands each chunk over rather than keeping the list of them alive until the end.
        yield read.pop(0)
    if exhausted:
        # Some iterators are not safe to ask again once they have ended.
        return
    async for chunk in source:
        if chunk:
            yield chunk


# ---------------------------------------------------------------------------------------------
# Filenames

_MAX_FILENAME_BYTES = 255
# An extension longer than this is more likely part of a long name than a file type.
_MAX_EXTENSION_BYTES = 32
# Control and format characters (including bidi overrides), line/paragraph separators, and
# lone surrogates (which UTF-8 cannot encode).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_PATH_SEPARATORS = re.compile(r"[/\\]")
_WHITESPACE_RUN = re.compile(r"\s+")


def safe_filename(raw: str | None, fallback: str = "file") -> str:
    """A user-supplied filename made fit for display (Content-Disposition), never for a path.

    The last path component only (`/` and `\\`), NFC, no control/format characters, whitespace
    collapsed, no leading/trailing spaces or dots, at most 255 bytes of UTF-8; `fallback` when
    nothing is left.
    """
    if not raw:
        return fallback
    name = _PATH_SEPARATORS.split(raw)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    name = unicodedata.normalize("NFC", name)
    name = _WHITESPACE_RUN.sub(" ", name).strip(" .")
    name = _truncate(name)
    # Stripping leaves no "." or ".." behind; the check is for a name that was only dots.
    return name if name not in ("", ".", "..") else fallback


def _truncate(name: str) -> str:
    if len(name.encode()) <= _MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode()) > _MAX_EXTENSION_BYTES:
        return _cut_utf8(name, _MAX_FILENAME_BYTES).rstrip(" .")
    stem = _cut_utf8(stem, _MAX_FILENAME_BYTES - len(suffix.encode())).rstrip(" .")
    return stem + suffix if stem else suffix.lstrip(".")


def _cut_utf8(text: str, limit: int) -> str:
    # Decoding with "ignore" drops the partial character that a cut inside one leaves.
    return text.encode()[:limit].decode(errors="ignore")


# ---------------------------------------------------------------------------------------------
# Content-Disposition

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 8187 attr-char, besides the letters, digits and "_.-~" that quote() always keeps.
_ATTR_CHAR_EXTRAS = "!#$&+^`|"


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A Content-Disposition header value (RFC 6266) naming `filename`, safe for any input.

    `filename*` (RFC 8187) carries the exact UTF-8 name; `filename` is an ASCII fallback for old
    clients, with nothing that would need escaping inside its quotes.
    """
    if not _TOKEN.fullmatch(disposition):
        raise ValueError(f"disposition must be a token, not {disposition!r}")
    name = safe_filename(filename)
    encoded = quote(name, safe=_ATTR_CHAR_EXTRAS, encoding="utf-8")
    return f"{disposition}; filename=\"{_ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


def _ascii_fallback(name: str) -> str:
    # "%" too: some clients percent-decode the plain parameter (RFC 6266 appendix D).
    return "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)


# ---------------------------------------------------------------------------------------------
# Streaming multipart/form-data

# Other form fields are skipped, but the parser still has to read them: this bounds how much
# a client can make it read (their headers and values together) besides the file.
FIELDS_LIMIT = 64 * 1024
# One part header line (name and value); python-multipart 0.0.20 has no limit of its own.
HEADER_LINE_LIMIT = 8 * 1024
# Transport padding after a boundary and the epilogue produce no callbacks, so the bytes fed
# outside the file part are bounded too, generously above FIELDS_LIMIT for the boundaries.
_RAW_OUTSIDE_FILE_LIMIT = 2 * FIELDS_LIMIT
# RFC 2046 section 5.1.1: 1 to 70 characters, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


@dataclass(frozen=True, slots=True)
class FilePart:
    """The file part of a multipart body: its declared name and type, and its bytes as they come.

    `chunks` must be iterated to its end: the upload is complete and well-formed only when it
    ends without raising (it raises BadRequest for a truncated or malformed body).
    """

    filename: str | None
    content_type: str | None
    chunks: AsyncIterator[bytes]


async def multipart_file(
    chunks: AsyncIterator[bytes], content_type: str, field: str = "file"
) -> FilePart:
    """Reads a multipart/form-data body up to the headers of the part named `field`.

    Parts before it are skipped (within FIELDS_LIMIT); the returned `chunks` streams the part's
    data as the parser produces it, then reads the rest of the body (bounded) and checks it.
    Raises BadRequest for a bad boundary, a malformed body or a body without that part.
    """
    parser = _FormParser(_boundary(content_type), field)
    source = aiter(chunks)
    while not parser.file_found:
        if parser.body_ended:
            raise BadRequest(f"The multipart body has no part named {field!r}.")
        chunk = await anext(source, None)
        if chunk is None:
            raise BadRequest(f"The multipart body ended without a part named {field!r}.")
        parser.feed(chunk)
    return FilePart(parser.filename, parser.content_type, _file_chunks(parser, source))


async def _file_chunks(parser: _FormParser, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while True:
        data = parser.take_file_data()
        if data:
            yield data
        if parser.file_ended:
            break
        chunk = await anext(source, None)
        if chunk is None:
            raise BadRequest("The request body ended before the file part did.")
        parser.feed(chunk)
    # The rest (the closing boundary, perhaps more fields) is read and dropped so that a body
    # cut short or malformed after the file is still refused; FIELDS_LIMIT bounds it.
    while not parser.body_ended:
        chunk = await anext(source, None)
        if chunk is None:
            raise BadRequest("The request body ended before the multipart body's closing boundary.")
        parser.feed(chunk)


def _boundary(content_type: str) -> bytes:
    media_type, params = _parse_parameters(content_type)
    if media_type != "multipart/form-data":
        raise BadRequest("The request body must be multipart/form-data.")
    boundary = params.get("boundary")
    if boundary is None:
        raise BadRequest("The multipart/form-data Content-Type has no boundary.")
    if not _BOUNDARY.fullmatch(boundary):
        raise BadRequest("The multipart/form-data boundary is invalid.")
    return boundary.encode("ascii")


class _FormParser:
    """python-multipart's callbacks turned into the state `multipart_file` needs."""

    def __init__(self, boundary: bytes, field: str) -> None:
        self._field = field
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )
        self.file_found = False
        self.file_ended = False
        self.body_ended = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self._in_file = False
        self._file_data: list[bytes] = []
        self._fields_size = 0
        self._raw_outside_file = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        outside_before = not self.file_found or self.file_ended
        if outside_before and self._raw_outside_file > _RAW_OUTSIDE_FILE_LIMIT:
            raise BadRequest("The multipart body has too much besides the file.")
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(f"The multipart body is malformed: {exc}") from None
        # A chunk that held some of the file counts only against the file's own size.
        if not self.file_found or (outside_before and self.file_ended):
            self._raw_outside_file += len(chunk)

    def take_file_data(self) -> bytes:
        # One write yields at most the chunk plus a held-back partial boundary, joined once.
        data = b"".join(self._file_data)
        self._file_data.clear()
        return data

    def _count_outside_file(self, size: int) -> None:
        self._fields_size += size
        if self._fields_size > FIELDS_LIMIT:
            raise BadRequest(f"The form fields besides the file exceed {FIELDS_LIMIT // 1024} KiB.")

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._check_header_line(end - start)

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header_line(end - start)

    def _check_header_line(self, added: int) -> None:
        if len(self._header_name) + len(self._header_value) > HEADER_LINE_LIMIT:
            raise BadRequest(f"A multipart header line exceeds {HEADER_LINE_LIMIT // 1024} KiB.")
        self._count_outside_file(added)

    def _on_header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        # The first of repeated headers wins, as with the request's own headers.
        self._headers.setdefault(name, bytes(self._header_value).strip())
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        if self.file_found:
            return
        disposition, params = _parse_parameters(_decode(self._headers.get("content-disposition")))
        if disposition != "form-data" or params.get("name") != self._field:
            return
        self.file_found = self._in_file = True
        self.filename = _part_filename(params)
        self.content_type = _decode(self._headers.get("content-type")) or None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._file_data.append(data[start:end])
        else:
            self._count_outside_file(end - start)

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.file_ended = True

    def _on_end(self) -> None:
        self.body_ended = True


def _decode(value: bytes | None) -> str:
    # Browsers send filenames as raw UTF-8 in the header; anything else is read as Latin-1.
    if value is None:
        return ""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _part_filename(params: dict[str, str]) -> str | None:
    extended = params.get("filename*")
    if extended is not None:
        decoded = _decode_extended(extended)
        if decoded is not None:
            return decoded
    return params.get("filename")


def _decode_extended(value: str) -> str | None:
    # RFC 5987: charset'language'percent-encoded; None when it cannot be decoded.
    charset, quote_mark, rest = value.partition("'")
    _language, quote_mark2, encoded = rest.partition("'")
    if not (quote_mark and quote_mark2):
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset.strip().lower())
    except (LookupError, UnicodeDecodeError):
        return None


def _parse_parameters(value: str) -> tuple[str, dict[str, str]]:
    """`type; key=value; key="quoted"` as (lower-cased type, {lower-cased key: value}).

    The first of repeated keys wins. In quoted values only `\\"` and `\\\\` are escapes: browsers
    send Windows paths with their backslashes as they are.
    """
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for segment in _split_parameters(rest):
        key, equals, raw = segment.partition("=")
        key = key.strip().lower()
        if not equals or not key:
            continue
        params.setdefault(key, _unquote(raw.strip()))
    return media_type.strip().lower(), params


def _split_parameters(text: str) -> list[str]:
    # Splits on the semicolons outside quoted strings.
    segments: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            segments.append("".join(current))
            current = []
            continue
        current.append(c)
    segments.append("".join(current))
    return segments


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r'\\(["\\])', r"\1", raw[1:-1])
    return raw
