"""The semantic cache's guard: the facts a paraphrase must keep, and the prompt text it compares."""

from __future__ import annotations

import pytest

from costwarden.domain.semantic_guard import facts, prompt_text, same_facts


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Which city is the capital of France?", "What is the capital city of France?"),
        ("Give me 5 tips for Japan.", "Share five tips for a trip to Japan."),  # digits and words alike
        ("Convert 1,000 miles to km.", "How many km are 1000 miles?"),
        ("Does it not work?", "Doesn't it work?"),
    ],
)
def test_paraphrases_keep_their_facts(a: str, b: str) -> None:
    assert same_facts(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Give me 3 tips for visiting Japan.", "Give me 5 tips for visiting Japan."),
        ("What is 12% of 250?", "What is 12% of 260?"),
        ("Is Norway in the EU?", "Is Norway not in the EU?"),
        ("Is Norway in the EU?", "Isn't Norway in the EU?"),
        ("What is the capital of France?", "What is the capital of Spain?"),
        ("Reset my iPhone password.", "Reset my password."),
        ('Translate "good night".', 'Translate "good morning".'),
        ("Give me the first item.", "Give me the second item."),
    ],
)
def test_a_number_a_negation_or_a_name_tells_them_apart(a: str, b: str) -> None:
    assert not same_facts(a, b)


def test_question_words_are_not_names_but_names_anywhere_are() -> None:
    assert facts("What does Tesla make? Tell me, please.").names == frozenset({"tesla"})
    assert facts("not never no").negations == 3


def test_the_prompt_text_is_text_alone() -> None:
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    assert prompt_text(chat) == "system: Be brief.\nuser: Hi"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    assert prompt_text(parts) == "user: a\nb"
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
    tool = {"messages": [{"role": "tool", "content": "42", "tool_call_id": "c"}]}
    assert prompt_text(image) is None and prompt_text(tool) is None
    assert prompt_text({"prompt": "Once upon"}) == "Once upon"
    assert prompt_text({"input": "embed me"}) is None and prompt_text({"messages": []}) is None
