"""The example model's tokenizer: a word or a single punctuation mark is one token.

Defines what the server reports in `usage`, and joins generated tokens back into text so that
re-tokenizing a completion gives back exactly the tokens that were counted.
"""

from __future__ import annotations

import re

# A word keeps inner hyphens and apostrophes ("well-known", "don't"); any other non-space
# character is a token by itself.
TOKEN_RE = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")

# No space before these (they close onto the previous word) ...
_CLOSERS = frozenset(".,;:!?)]}%")
# ... and none after these.
_OPENERS = frozenset("([{$")
_QUOTE = '"'


def tokenize(text: str) -> list[str]:
    """Split text into tokens; whitespace is never a token."""
    return TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    """Number of tokens in text, without building the list."""
    return sum(1 for _ in TOKEN_RE.finditer(text))


class Detokenizer:
    """Turns a token stream into text pieces, one per token, with English spacing.

    Stateful because a double quote opens or closes depending on how many came before.
    """

    __slots__ = ("_previous", "_quote_open", "_separator")

    def __init__(self, *, at_start: bool) -> None:
        self._quote_open = False
        # None means nothing before: the first piece then gets no separator.
        self._previous: str | None = None if at_start else ""
        self._separator = " "

    def piece(self, token: str) -> str:
        """The text to append for token, including any whitespace in front of it."""
        previous = self._previous
        self._previous = token
        separator = self._separator
        self._separator = " "
        if token == _QUOTE:
            self._quote_open = not self._quote_open
            if not self._quote_open:  # a closing quote hugs the word before it
                return token
        elif token in _CLOSERS or (previous == _QUOTE and self._quote_open):
            return token
        if previous is None or previous in _OPENERS:
            return token
        return separator + token

    def paragraph_break(self) -> None:
        """Start a new paragraph: the next piece is set off by a blank line."""
        self._separator = "\n\n"
        self._quote_open = False
