"""Lines a rename made too long, folded again: comments, docstrings and string literals.

`ruff format` folds code but never prose: a comment, a docstring paragraph or a sentence in a
string that grew past the line length (`item` -> `purchase order`) would fail `ruff check`.
"""

from __future__ import annotations

import io
import re
import textwrap
import token
import tokenize

LINE_LENGTH = 100
_BULLET = re.compile(r"^(\s*)([-*] |\d+\. )?")


def reflow(source: str, limit: int = LINE_LENGTH) -> str:
    for fold in (_fold_comments, _fold_docstrings, _fold_strings):
        source = fold(source, limit)
    return source


def _fold_comments(source: str, limit: int) -> str:
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    index = 0
    while index < len(lines):
        match = re.match(r"^(\s*)# ", lines[index])
        if match is None:
            out.append(lines[index])
            index += 1
            continue
        block = [lines[index]]
        while index + len(block) < len(lines) and lines[index + len(block)].startswith(
            match.group(1) + "# "
        ):
            block.append(lines[index + len(block)])
        index += len(block)
        if max(len(line.rstrip("\n")) for line in block) <= limit:
            out += block
            continue
        text = " ".join(line.strip()[2:] for line in block)
        prefix = match.group(1) + "# "
        out += [f"{line}\n" for line in textwrap.wrap(text, limit, initial_indent=prefix,
                                                        subsequent_indent=prefix)]  # fmt: skip
    return "".join(out)


def _fold_docstrings(source: str, limit: int) -> str:
    lines = source.splitlines(keepends=True)
    for first, last in _docstring_spans(source):
        if all(len(lines[n].rstrip("\n")) <= limit for n in range(first, last + 1)):
            continue
        lines[first : last + 1] = _fold_paragraphs(lines[first : last + 1], limit)
    return "".join(lines)


def _docstring_spans(source: str) -> list[tuple[int, int]]:
    """(first, last) line indexes of each docstring, last first (so edits keep indexes)."""
    spans = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index, current in enumerate(tokens):
        if current.type != token.STRING or not current.string.endswith('"""'):
            continue
        before = tokens[index - 1] if index else None
        if before is None or before.type in (token.NEWLINE, token.INDENT, token.DEDENT, token.NL):
            spans.append((current.start[0] - 1, current.end[0] - 1))
    return sorted(spans, reverse=True)


def _fold_paragraphs(lines: list[str], limit: int) -> list[str]:
    out: list[str] = []
    paragraph: list[str] = []
    for line in [*lines, "\n"]:
        blank = not line.strip() or line.strip() in ('"""', '""""""')
        if paragraph and (blank or _BULLET.match(line).group(2)):  # type: ignore[union-attr]
            out += _wrap(paragraph, limit)
            paragraph = []
        if blank:
            out.append(line)
        else:
            paragraph.append(line)
    return out[:-1]


def _wrap(paragraph: list[str], limit: int) -> list[str]:
    if all(len(line.rstrip("\n")) <= limit for line in paragraph):
        return paragraph
    match = _BULLET.match(paragraph[0])
    assert match is not None
    indent, bullet = match.group(1), match.group(2) or ""
    text = " ".join(line.strip() for line in paragraph)
    hanging = indent + " " * len(bullet)
    wrapped = textwrap.wrap(text, limit, initial_indent=indent, subsequent_indent=hanging)
    return [f"{line}\n" for line in wrapped]


def _fold_strings(source: str, limit: int) -> str:
    """A plain one-line string literal on a line too long becomes a parenthesised implicit
    concatenation of pieces split at spaces (`ruff format` then lays it out)."""
    lines = source.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for current in reversed(tokens):
        row, column = current.start
        if (
            current.type != token.STRING
            or current.start[0] != current.end[0]
            or len(lines[row - 1].rstrip("\n")) <= limit
            or not re.fullmatch(r'"[^"\\{}]* [^"\\{}]*"', current.string)
        ):
            continue
        pieces = textwrap.wrap(current.string[1:-1], limit // 2, drop_whitespace=False)
        folded = "(" + " ".join(f'"{piece}"' for piece in pieces) + ")"
        line = lines[row - 1]
        lines[row - 1] = line[:column] + folded + line[current.end[1] :]
    return "".join(lines)
