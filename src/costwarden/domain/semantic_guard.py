"""The semantic cache's guard against the classic false hit: two prompts that embed alike but ask
different things because a number, a negation or a named entity differs.

Pure and deliberately blunt: it extracts the facts a paraphrase must keep (numbers, including
number words; negation markers; capitalised names and quoted strings) and a semantic hit is allowed
only when both prompts carry the same facts. It refuses many true paraphrases ("5" vs "five" is
allowed, "Paris" vs "the French capital" is not); that costs recall, never precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*")
_QUOTED = re.compile(r"\"([^\"]{1,200})\"|'([^']{1,200})'|“([^”]{1,200})”")


def _words(text: str) -> list[str]:
    return text.split()


_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        _words(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty"
        )
    )
} | {
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
    "ninety": "90", "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
    "dozen": "12", "half": "0.5", "twice": "x2", "double": "x2", "triple": "x3", "first": "#1",
    "second": "#2", "third": "#3", "fourth": "#4", "fifth": "#5", "last": "#last",
}  # fmt: skip
_NEGATIONS = frozenset(
    _words(
        "not no never none nobody nothing neither nor without cannot can't won't don't doesn't didn't isn't "
        "aren't wasn't weren't shouldn't wouldn't couldn't haven't hasn't hadn't mustn't non"
    )
)
# Capitalised words that are not names: question words and the verbs prompts start with.
_NOT_NAMES = frozenset(
    _words(
        "a an the what whats what's how why when where who whom whose which is are was were do does did can "
        "could would should will shall may might must please tell explain give list describe write show name "
        "summarize summarise define compare find make create i i'm i've my me we our you your it its this that "
        "these those there here in on at of for to from by with about and or but if then so as be been being "
        "have has had let lets let's help any some all every each yes okay ok hi hello hey dear "
        "translate convert calculate compute suggest recommend provide generate draft rewrite answer "
        "user system assistant developer share send get check plan build fix need want use using set "
        "remind compose count estimate return print sort add remove update delete"
    )
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What a paraphrase must keep: numbers, negation markers, names and quoted strings."""

    numbers: frozenset[str]
    negations: int  # how many negation markers: "not ... not" is not "not"
    names: frozenset[str]


def facts(text: str) -> Facts:
    numbers = {m.group().replace(",", "") for m in _NUMBER.finditer(text)}
    negations = 0
    names = {next(g for g in m.groups() if g is not None).lower() for m in _QUOTED.finditer(text)}
    for m in _WORD.finditer(text):
        word = m.group().replace("’", "'")
        lower = word.lower()
        if lower in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[lower])
        elif lower in _NEGATIONS or lower.endswith("n't"):
            negations += 1
        elif (word[0].isupper() and lower not in _NOT_NAMES) or any(c.isupper() for c in word[1:]):
            names.add(lower)
    return Facts(frozenset(numbers), negations, frozenset(names))


def same_facts(a: str, b: str) -> bool:
    """True when a semantic hit between prompts `a` and `b` is allowed by the guard."""
    return facts(a) == facts(b)


def prompt_text(body: dict[str, Any]) -> str | None:
    """The text of an OpenAI chat or completion request that the semantic cache compares: every
    message's text, in order, with its role. None when the request is not text alone (images, audio,
    tool results) or has no text: such a request is only ever served by the exact cache."""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
                return None
            content = message.get("content")
            if isinstance(content, list):
                if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                    return None
                content = "\n".join(str(p.get("text", "")) for p in content)
            if not isinstance(content, str) or message.get("tool_calls"):
                return None
            parts.append(f"{message['role']}: {content}")
        return "\n".join(parts) or None
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) and prompt else None
