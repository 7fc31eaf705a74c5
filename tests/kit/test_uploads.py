"""keel.kit.uploads: type from content, safe filenames, and multipart parsed as a stream."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable

import pytest

from keel.errors import BadRequest
from keel.kit.uploads import (
    FIELDS_LIMIT,
    SNIFF_BYTES,
    content_disposition,
    declared_type_agrees,
    multipart_file,
    safe_filename,
    sniff,
    split_head,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
BOUNDARY = "----keelBoundary7MA4YWxkTrZu0gW"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


# --- sniff ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n%\xe2\xe3", "application/pdf"),
        (b"PK\x03\x04\x14\x00\x00\x00", "application/zip"),
        (b"PK\x05\x06" + bytes(18), "application/zip"),
    ],
)
def test_sniff_recognises_each_type_by_its_magic_bytes(head: bytes, expected: str) -> None:
    assert sniff(head[:SNIFF_BYTES]) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world",
        b"<svg xmlns='http://www.w3.org/2000/svg'>",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"GIF88a",
        b"\x89PNG\r\n",  # cut short
        b"%PDF",  # no dash
        b"PK\x07\x08",
        b"MZ\x90\x00",  # a Windows executable
    ],
)
def test_sniff_is_none_for_anything_else(head: bytes) -> None:
    assert sniff(head) is None


def test_sniff_bytes_covers_the_longest_signature() -> None:
    assert sniff(b"RIFF\x00\x00\x00\x00WEBP"[:SNIFF_BYTES]) == "image/webp"


@pytest.mark.parametrize(
    "declared",
    [
        None,
        "",
        "application/octet-stream",
        "Application/Octet-Stream; charset=binary",
        "image/png",
        "IMAGE/PNG",
        " image/png ; name=x.png",
    ],
)
def test_declared_type_agrees_when_unknown_or_equal(declared: str | None) -> None:
    assert declared_type_agrees(declared, "image/png")


@pytest.mark.parametrize("declared", ["application/pdf", "image/pngx", "text/html", "image/*"])
def test_declared_type_disagrees_when_it_names_another_type(declared: str) -> None:
    # A PNG uploaded as a PDF: the bytes decide, and the declaration is caught lying.
    assert sniff(PNG) == "image/png"
    assert not declared_type_agrees(declared, sniff(PNG) or "")


def test_image_jpg_is_taken_for_image_jpeg() -> None:
    assert declared_type_agrees("image/jpg", "image/jpeg")
    assert declared_type_agrees("image/JPG; q=1", "image/jpeg")
    assert not declared_type_agrees("image/jpg", "image/png")


# --- split_head -------------------------------------------------------------------------------

DATA = bytes(range(256)) * 4


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 7, 11, 12, 13, 100, 1024, 5000])
@pytest.mark.parametrize("size", [0, 1, 12, 512, 1024, 2000])
async def test_split_head_gives_the_head_and_every_byte_again(chunk_size: int, size: int) -> None:
    head, rest = await split_head(stream(pieces(DATA, chunk_size)), size)
    assert head == DATA[:size]
    assert b"".join(await collect(rest)) == DATA


async def test_split_head_reads_only_the_chunks_that_hold_the_head() -> None:
    pulled: list[int] = []

    async def counted() -> AsyncIterator[bytes]:
        for index, chunk in enumerate(pieces(DATA, 10)):
            pulled.append(index)
            yield chunk

    head, rest = await split_head(counted(), 15)
    assert head == DATA[:15]
    assert pulled == [0, 1]
    chunks = await collect(rest)
    # The chunks come back as they were read, not re-joined into one.
    assert chunks == pieces(DATA, 10)


async def test_split_head_skips_empty_chunks() -> None:
    head, rest = await split_head(stream([b"", b"ab", b"", b"", b"cd", b"", b"ef", b""]), 3)
    assert head == b"abc"
    assert await collect(rest) == [b"ab", b"cd", b"ef"]


async def test_split_head_of_an_empty_stream() -> None:
    head, rest = await split_head(stream([]), SNIFF_BYTES)
    assert head == b""
    assert await collect(rest) == []
    head, rest = await split_head(stream([b"", b""]), SNIFF_BYTES)
    assert head == b""
    assert await collect(rest) == []


async def test_split_head_of_a_stream_shorter_than_the_head() -> None:
    head, rest = await split_head(stream([b"GIF", b"89a"]), SNIFF_BYTES)
    assert head == b"GIF89a"
    assert sniff(head) == "image/gif"
    assert b"".join(await collect(rest)) == b"GIF89a"


async def test_split_head_does_not_ask_an_ended_stream_again() -> None:
    class OneShot:
        def __init__(self) -> None:
            self.ended = False

        def __aiter__(self) -> OneShot:
            return self

        async def __anext__(self) -> bytes:
            if self.ended:
                raise AssertionError("asked again after it ended")
            self.ended = True
            raise StopAsyncIteration

    head, rest = await split_head(OneShot(), 4)
    assert head == b""
    assert await collect(rest) == []


# --- safe_filename ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ("/abs/path/to/x.txt", "x.txt"),
        ("dir/", "file"),
        ("..", "file"),
        (".", "file"),
        ("...", "file"),
        ("", "file"),
        (None, "file"),
        ("   ", "file"),
        ("\x00\x01", "file"),
        ("  .hidden.  ", "hidden"),
        ("a   \t b.txt", "a b.txt"),
        ("evil\u202egnp.exe", "evilgnp.exe"),
        ("zero\u200bwidth\ufeff.txt", "zerowidth.txt"),
        ("line\u2028sep\u2029para.txt", "lineseppara.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("lone\ud800surrogate.txt", "lonesurrogate.txt"),
        ("Cafe\u0301.txt", "Caf\u00e9.txt"),  # NFC
        ("日本語の資料.pdf", "日本語の資料.pdf"),
    ],
)
def test_safe_filename(raw: str | None, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_safe_filename_never_keeps_a_line_break() -> None:
    name = safe_filename("a\r\nX-Injected: 1.txt")
    assert "\r" not in name
    assert "\n" not in name
    assert name == "aX-Injected: 1.txt"


def test_safe_filename_uses_the_given_fallback() -> None:
    assert safe_filename("../", fallback="attachment") == "attachment"


def test_safe_filename_truncates_to_255_bytes_and_keeps_the_extension() -> None:
    name = safe_filename("a" * 300 + ".pdf")
    assert name == "a" * 251 + ".pdf"
    assert len(name.encode()) == 255


def test_safe_filename_truncates_without_cutting_a_character() -> None:
    # Three bytes per character: 255 bytes end exactly on a character; 253 would not.
    name = safe_filename("語" * 100 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= 255
    assert name == "語" * 83 + ".pdf"  # 249 + 4 bytes; an 84th character would need 256
    long_emoji = safe_filename("😀" * 100)
    assert long_emoji == "😀" * 63  # four bytes each: 252 of 255


def test_safe_filename_truncates_a_long_extension_as_part_of_the_name() -> None:
    name = safe_filename("x." + "y" * 300)
    assert name == ("x." + "y" * 300)[:255]


# --- content_disposition ----------------------------------------------------------------------


def test_content_disposition_of_a_plain_name() -> None:
    assert content_disposition("report.pdf") == (
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    )
    assert content_disposition("a.png", "inline").startswith("inline; ")


def test_content_disposition_encodes_utf8_with_an_ascii_fallback() -> None:
    header = content_disposition("Résumé 2024.pdf")
    assert header == (
        "attachment; filename=\"R_sum_ 2024.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%202024.pdf"
    )
    header.encode("ascii")


@pytest.mark.parametrize(
    "raw",
    [
        'quote"d.txt',
        "back\\slash.txt",
        "a\r\nSet-Cookie: x=1.txt",
        "semi;colon=1.txt",
        "pct%22.txt",
        "tab\there.txt",
        "\u202eevil.txt",
    ],
)
def test_content_disposition_cannot_be_broken_by_the_name(raw: str) -> None:
    header = content_disposition(raw)
    header.encode("ascii")
    assert "\r" not in header
    assert "\n" not in header
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    # The quoted string ends at the one closing quote: nothing inside needs escaping.
    assert header == f'attachment; filename="{fallback}"; ' + header.split('"; ', 1)[1]
    assert "\\" not in fallback
    assert "%" not in fallback
    extended = header.split("filename*=UTF-8''", 1)[1]
    assert all(c.isalnum() or c in "!#$&+-.^_`|~%" for c in extended)


def test_content_disposition_refuses_a_disposition_that_is_not_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        content_disposition("a.txt", "attachment; x=y")


# --- multipart_file ---------------------------------------------------------------------------


def text_part(name: str, value: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
    )


def file_head(
    name: str = "file",
    filename: str = "photo.png",
    content_type: str = "image/png",
    extra: str = "",
) -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"{extra}\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


CLOSE = f"\r\n--{BOUNDARY}--\r\n".encode()


def form_body(data: bytes, before: bytes = b"", after: bytes = b"") -> bytes:
    return before + file_head() + data + f"\r\n{after.decode()}--{BOUNDARY}--\r\n".encode()


async def upload(body_chunks: Iterable[bytes], field: str = "file") -> tuple[str | None, bytes]:
    part = await multipart_file(stream(body_chunks), FORM, field)
    return part.filename, b"".join(await collect(part.chunks))


async def test_multipart_file_gives_the_part_headers_and_data() -> None:
    part = await multipart_file(stream([form_body(PNG + b"rest")]), FORM)
    assert part.filename == "photo.png"
    assert part.content_type == "image/png"
    assert b"".join(await collect(part.chunks)) == PNG + b"rest"


async def test_multipart_file_streams_a_50_mb_file_in_bounded_chunks() -> None:
    chunk_size = 64 * 1024
    block = hashlib.sha256(b"seed").digest() * (chunk_size // 32)  # 64 KiB, no boundary in it
    blocks = 50 * 1024 * 1024 // chunk_size
    expected = hashlib.sha256()
    for _ in range(blocks):
        expected.update(block)
    largest_input = 0

    async def body() -> AsyncIterator[bytes]:
        # Generated as it goes: the whole body never exists at once, here or in the parser.
        nonlocal largest_input
        head = file_head()
        pending = head
        for _ in range(blocks):
            pending += block
            out, pending = pending[:chunk_size], pending[chunk_size:]
            largest_input = max(largest_input, len(out))
            yield out
        for out in pieces(pending + CLOSE, chunk_size):
            largest_input = max(largest_input, len(out))
            yield out

    part = await multipart_file(body(), FORM)
    received = hashlib.sha256()
    largest_output = count = 0
    async for chunk in part.chunks:
        largest_output = max(largest_output, len(chunk))
        received.update(chunk)
        count += 1
    assert received.hexdigest() == expected.hexdigest()
    # At most one input chunk and a held-back partial boundary per chunk handed on.
    assert largest_output <= largest_input + len(BOUNDARY) + 8
    assert count >= blocks


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 13, 31, 64, 97])
async def test_multipart_file_round_trips_any_chunking(chunk_size: int) -> None:
    # Data that looks like the start of a boundary, CRLFs and dashes, at every split.
    data = b"\r\n-\r\n--\r\n--" + BOUNDARY[:-1].encode() + b"x\r\n\r\n" + PNG + b"\r"
    body = form_body(data, before=text_part("title", b"a title"))
    filename, received = await upload(pieces(body, chunk_size))
    assert filename == "photo.png"
    assert received == data


async def test_multipart_file_round_trips_splits_at_each_byte_of_the_boundary() -> None:
    data = b"payload-" * 50
    body = form_body(data)
    boundary_at = body.index(f"\r\n--{BOUNDARY}--".encode())
    for cut in range(boundary_at - 2, boundary_at + len(BOUNDARY) + 8):
        _, received = await upload([body[:cut], body[cut:]])
        assert received == data, cut


async def test_multipart_file_of_an_empty_file() -> None:
    filename, received = await upload([form_body(b"")])
    assert filename == "photo.png"
    assert received == b""


async def test_multipart_file_skips_text_fields_before_the_file() -> None:
    before = text_part("title", b"Holiday") + text_part("tags", b"a,b,c")
    _, received = await upload(pieces(form_body(b"DATA", before=before), 10))
    assert received == b"DATA"


async def test_multipart_file_picks_the_named_field() -> None:
    other = file_head(name="thumbnail", filename="t.png") + b"THUMB\r\n"
    body = other + file_head(name="attachment", filename="doc.pdf") + b"%PDF-1.7" + CLOSE
    filename, received = await upload([body], field="attachment")
    assert filename == "doc.pdf"
    assert received == b"%PDF-1.7"


async def test_multipart_file_takes_only_the_first_part_of_that_name() -> None:
    body = file_head() + b"first" + b"\r\n" + file_head(filename="b.png") + b"second" + CLOSE
    filename, received = await upload([body])
    assert (filename, received) == ("photo.png", b"first")


async def test_multipart_file_reads_fields_after_the_file_within_the_limit() -> None:
    body = form_body(b"DATA", after=text_part("note", b"x" * 1000))
    _, received = await upload(pieces(body, 100))
    assert received == b"DATA"


async def test_multipart_file_refuses_a_large_text_field_before_the_file() -> None:
    body = form_body(b"DATA", before=text_part("title", b"x" * (100 * 1024)))
    with pytest.raises(BadRequest, match="64 KiB"):
        await upload(pieces(body, 4096))


async def test_multipart_file_refuses_many_small_fields_before_the_file() -> None:
    fields = b"".join(text_part(f"f{i}", b"y" * 1000) for i in range(FIELDS_LIMIT // 1000 + 1))
    with pytest.raises(BadRequest, match="64 KiB"):
        await upload(pieces(form_body(b"DATA", before=fields), 4096))


async def test_multipart_file_refuses_a_large_field_after_the_file() -> None:
    body = form_body(b"DATA", after=text_part("note", b"x" * (100 * 1024)))
    part = await multipart_file(stream(pieces(body, 4096)), FORM)
    with pytest.raises(BadRequest, match="64 KiB"):
        await collect(part.chunks)


async def test_multipart_file_refuses_a_header_line_over_8_kib() -> None:
    # Recent python-multipart refuses it itself (over 4 KiB); 0.0.20 relies on our limit.
    body = form_body(b"DATA", before=text_part("a" * (9 * 1024), b"v"))
    with pytest.raises(BadRequest):
        await upload(pieces(body, 1024))


async def test_multipart_file_refuses_endless_padding_after_a_boundary() -> None:
    # Transport padding produces no callbacks, so only the bytes read can bound it.
    padding = [text_part("a", b"v") + f"--{BOUNDARY}".encode()] + [b" " * 4096] * 100
    with pytest.raises(BadRequest, match="besides the file"):
        await upload(padding)


async def test_multipart_file_refuses_a_body_cut_short_in_the_file() -> None:
    body = form_body(b"x" * 10_000)
    part = await multipart_file(stream(pieces(body[:5000], 1000)), FORM)
    with pytest.raises(BadRequest, match="ended before the file part"):
        await collect(part.chunks)


async def test_multipart_file_refuses_a_body_cut_short_inside_the_closing_boundary() -> None:
    body = form_body(b"x" * 100)
    part = await multipart_file(stream([body[:-8]]), FORM)
    with pytest.raises(BadRequest):
        await collect(part.chunks)


async def test_multipart_file_refuses_a_body_without_its_closing_boundary() -> None:
    body = file_head() + b"DATA\r\n" + text_part("more", b"value")
    part = await multipart_file(stream([body]), FORM)
    with pytest.raises(BadRequest, match="closing boundary"):
        await collect(part.chunks)


async def test_multipart_file_refuses_a_body_without_the_file_part() -> None:
    body = text_part("title", b"no file here") + f"--{BOUNDARY}--\r\n".encode()
    with pytest.raises(BadRequest, match="no part named 'file'"):
        await upload([body])


async def test_multipart_file_refuses_a_body_cut_short_before_the_file_part() -> None:
    with pytest.raises(BadRequest, match="without a part named 'file'"):
        await upload([text_part("title", b"x")])
    with pytest.raises(BadRequest):
        await upload([])


async def test_multipart_file_refuses_a_malformed_body() -> None:
    with pytest.raises(BadRequest, match="malformed"):
        await upload([b"this is not multipart at all\r\n"])


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; boundary=" + "b" * 71,
        "multipart/form-data; boundary=bad{char}",
        'multipart/form-data; boundary="ends with space "',
        f"multipart/mixed; boundary={BOUNDARY}",
        f"application/json; boundary={BOUNDARY}",
    ],
)
async def test_multipart_file_refuses_a_missing_or_invalid_boundary(content_type: str) -> None:
    with pytest.raises(BadRequest):
        await multipart_file(stream([form_body(b"DATA")]), content_type)


async def test_multipart_file_accepts_a_quoted_boundary_and_any_case() -> None:
    content_type = f'Multipart/Form-Data; charset=utf-8; BOUNDARY="{BOUNDARY}"'
    part = await multipart_file(stream([form_body(b"DATA")]), content_type)
    assert b"".join(await collect(part.chunks)) == b"DATA"


async def test_multipart_file_prefers_an_rfc_5987_filename() -> None:
    head = file_head(filename="fallback.txt", extra="; filename*=UTF-8''r%C3%A9sum%C3%A9.txt")
    part = await multipart_file(stream([head + b"x" + CLOSE]), FORM)
    assert part.filename == "résumé.txt"


async def test_multipart_file_ignores_an_undecodable_rfc_5987_filename() -> None:
    head = file_head(filename="fallback.txt", extra="; filename*=nonsense-charset''%FF")
    part = await multipart_file(stream([head + b"x" + CLOSE]), FORM)
    assert part.filename == "fallback.txt"


async def test_multipart_file_reads_a_raw_utf8_filename_with_quotes_and_semicolons() -> None:
    head = file_head(filename='日本; name=\\"evil\\".png')
    part = await multipart_file(stream([head + b"x" + CLOSE]), FORM)
    assert part.filename == '日本; name="evil".png'


async def test_multipart_file_keeps_a_windows_path_for_safe_filename() -> None:
    part = await multipart_file(stream([file_head(filename="C:\\tmp\\a.png") + b"x" + CLOSE]), FORM)
    assert part.filename == "C:\\tmp\\a.png"
    assert safe_filename(part.filename) == "a.png"


async def test_multipart_file_without_filename_or_type() -> None:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
    part = await multipart_file(stream([head + b"x" + CLOSE]), FORM)
    assert part.filename is None
    assert part.content_type is None
    assert b"".join(await collect(part.chunks)) == b"x"
