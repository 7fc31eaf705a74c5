"""Python source of one domain rewritten for another: `items` becomes `purchase_orders`.

Every spelling of the example domain's name is replaced by the same spelling of the new one:
identifiers and code strings in snake case (`item_id`, `get_item`, `"items"` as a table,
`"item.created"`), URL paths in kebab case (`/items` -> `/purchase-orders`), class names in
Pascal case (`ItemRead`), constants in upper case, and prose in comments and docstrings in
words (`an item` -> `a purchase order`; `code spans` in prose stay code). Python's tokenizer
tells these apart, so `dict.items()` and a page's `["items"]` key are left alone.
"""

from __future__ import annotations

import io
import re
import token
import tokenize
from collections.abc import Callable
from dataclasses import dataclass

Replace = Callable[[re.Match[str]], str]


@dataclass(frozen=True)
class DomainName:
    """A domain's name in every spelling, from its plural (`purchase-orders`)."""

    plural: list[str]  # words: ["purchase", "orders"]
    singular: list[str]

    @classmethod
    def parse(cls, name: str, singular: str | None = None) -> DomainName:
        words = [word for word in re.split(r"[-_\s]+", name.strip().lower()) if word]
        if not words or not all(re.fullmatch(r"[a-z][a-z0-9]*", word) for word in words):
            raise ValueError(f"a domain name is lower-case words, e.g. purchase-orders: {name!r}")
        if singular is None:
            return cls(words, [*words[:-1], _singular(words[-1])])
        return cls(words, [word for word in re.split(r"[-_\s]+", singular.lower()) if word])

    def spell(self, word: str, style: str) -> str:
        """`word` is one of item/items/Item/Items/ITEM/ITEMS; `style`: code, path or prose."""
        words = self.plural if word.lower().endswith("s") else self.singular
        if word.isupper():
            return "_".join(words).upper()
        if word[0].isupper():
            if style == "prose":
                return " ".join(words).capitalize()
            return "".join(part.capitalize() for part in words)
        return {"code": "_".join, "path": "-".join, "prose": " ".join}[style](words)

    def spell_in_code(self, text: str) -> str:
        """`text` (an identifier, a file name) with the example's name in code spelling."""
        return _code(text, self)

    @property
    def package(self) -> str:
        return "_".join(self.plural)

    @property
    def identifiers(self) -> tuple[str, str]:
        """The singular and the plural as Python names (`purchase_order`, `purchase_orders`)."""
        return "_".join(self.singular), self.package


def _singular(word: str) -> str:
    """English's usual rules (the scaffold prints the result; `--singular` overrides it)."""
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "tches", "shes", "uses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


# A spelling of the example's name as a whole word or a part of an identifier (`get_item`,
# `ItemRead`, `GetItem`, `ITEM_ID`).
_CODE = re.compile(r"(?<![A-Za-z])(ITEMS|ITEM|items|item)(?![a-z])|(?<![A-Z])(Items|Item)(?![a-z])")
_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|JOIN|RETURNING)\b")
_PATH = re.compile(r"(?<=/)(items)(?![a-z])")
_ARTICLE = re.compile(r"\b([Aa]n?) (items?|Items?)\b")
_CODE_SPAN = re.compile(r"(`[^`]*`)")


def rename_source(source: str, name: DomainName) -> str:
    """The source with each token rewritten in place (the layout is kept as it was)."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    pieces, done = [], 0
    for index, current in enumerate(tokens):
        start = offsets[current.start[0] - 1] + current.start[1]
        end = offsets[current.end[0] - 1] + current.end[1]
        if end <= start:
            continue
        pieces += [source[done:start], _renamed(tokens, index, source[start:end], name)]
        done = end
    return "".join([*pieces, source[done:]])


def _renamed(tokens: list[tokenize.TokenInfo], index: int, text: str, name: DomainName) -> str:
    current = tokens[index]
    if current.type == token.NAME:
        if text == "items" and _method_call(tokens, index):
            return text  # dict.items()
        return _code(text, name)
    if current.type == token.COMMENT:
        return _prose(text, name)
    if current.type == token.STRING or current.type == getattr(token, "FSTRING_MIDDLE", -1):
        if _subscript_key(tokens, index):
            return text  # page["items"]: a field of the page, not the domain
        return _prose(text, name) if _docstring(tokens, index) else _code_string(text, name)
    return text


def _code(text: str, name: DomainName) -> str:
    return _CODE.sub(lambda match: name.spell(match[0], "code"), text)


def _code_string(text: str, name: DomainName) -> str:
    """A string in code: SQL and names in code spelling, a sentence in words (a summary, an
    error message), URL paths in path spelling."""
    if " " in text and not _SQL.search(text):
        return _prose(text, name)
    text = _PATH.sub(lambda match: name.spell(match[0], "path"), text)
    return _code(text, name)


def _prose(text: str, name: DomainName) -> str:
    parts = _CODE_SPAN.split(text)
    return "".join(
        _code_span(part, name) if part.startswith("`") else _words(part, name) for part in parts
    )


def _code_span(text: str, name: DomainName) -> str:
    text = _PATH.sub(lambda match: name.spell(match[0], "path"), text)
    return _code(text, name)


def _words(text: str, name: DomainName) -> str:
    def article(match: re.Match[str]) -> str:
        article, word = match.groups()
        spelled = name.spell(word, "prose")
        vowel = spelled[0].lower() in "aeiou"
        chosen = ("an" if vowel else "a") if len(article) <= 2 else article
        return f"{chosen.capitalize() if article[0].isupper() else chosen} {spelled}"

    text = _ARTICLE.sub(article, text)
    return _CODE.sub(lambda match: name.spell(match[0], "prose"), text)


def _previous(tokens: list[tokenize.TokenInfo], index: int) -> tokenize.TokenInfo | None:
    for earlier in reversed(tokens[:index]):
        if earlier.type not in (token.NL, token.COMMENT):
            return earlier
    return None


def _method_call(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    before = _previous(tokens, index)
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    return bool(before and before.string == "." and after and after.string == "(")


def _subscript_key(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    """`x["items"]`: a string alone between brackets that follow an expression."""
    before = _previous(tokens, index)
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    if not (before and before.string == "[" and after and after.string == "]"):
        return False
    opener = _previous(tokens, tokens.index(before))
    return bool(opener and (opener.type == token.NAME or opener.string in (")", "]")))


def _docstring(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    """A string that is a statement on its own (a module, class or function docstring)."""
    before = _previous(tokens, index)
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    starts = before is None or before.type in (token.NEWLINE, token.INDENT, token.DEDENT)
    return starts and after is not None and after.type in (token.NEWLINE, token.ENDMARKER)
