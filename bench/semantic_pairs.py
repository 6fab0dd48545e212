#!/usr/bin/env python
"""Build the semantic cache's labelled set: pairs of prompts that should hit (paraphrases) and
near-misses that must not (another number, a negation, another entity, a near topic).

    python bench/semantic_pairs.py     # writes bench/data/semantic_pairs.jsonl (deterministic)

Each template is a question, a paraphrase of it, and (where English allows) its negation, with slots
for an entity and a number; filling them gives, per template and filling: one paraphrase pair
(hit) and negated (miss); for two fillings also the question and its paraphrase with another
number (miss) and another entity (miss). Near-topic pairs (same words, another question) are listed by hand at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "semantic_pairs.jsonl"

# (question, paraphrase, negated question or None); {E} an entity, {N} a number.
TEMPLATES: list[tuple[str, str, str | None]] = [
    ("What is the population of {E}?", "How many people live in {E}?", None),
    ("What is the capital city of {E}?", "Which city is the capital of {E}?", None),
    ("Is {E} a member of the European Union?", "Does {E} belong to the European Union?",
     "Is {E} not a member of the European Union?"),
    ("Give me {N} tips for visiting {E}.", "Share {N} tips for a trip to {E}.", None),
    ("Convert {N} miles to kilometers.", "How many kilometers are {N} miles?", None),
    ("What is {N} percent of 250?", "Calculate {N}% of 250.", None),
    ("Write a haiku about {E}.", "Compose a haiku about {E}.", None),
    ("Summarize the history of {E} in {N} sentences.", "Give a {N}-sentence summary of the history of {E}.", None),
    ("Should I invest in {E} stock?", "Is buying {E} stock a good idea?", "Should I not invest in {E} stock?"),
    ("How do I reset my {E} password?", "What are the steps to reset a {E} password?", None),
    ("Is it safe to drink tap water in {E}?", "Can you safely drink the tap water in {E}?",
     "Is it unsafe to drink tap water in {E}? Answer: it is not safe, right?"),
    ("What time zone is {E} in?", "Which time zone does {E} use?", None),
    ("Translate 'good morning' into {E}.", "How do you say 'good morning' in {E}?", None),
    ("List {N} famous landmarks in {E}.", "Name {N} well-known landmarks in {E}.", None),
    ("Does {E} require a visa for US citizens?", "Do US citizens need a visa to visit {E}?",
     "Does {E} not require a visa for US citizens?"),
    ("What is the boiling point of water at {N} meters altitude?",
     "At an altitude of {N} meters, at what temperature does water boil?", None),
    ("Can I bring a laptop on a flight to {E}?", "Am I allowed to take a laptop on a plane to {E}?",
     "Can I not bring a laptop on a flight to {E}?"),
    ("How long does it take to fly to {E}?", "What is the flight time to {E}?", None),
    ("Recommend {N} books about {E}.", "Suggest {N} books on {E}.", None),
    ("What currency is used in {E}?", "Which currency does {E} use?", None),
    ("Is {E} open on Sundays?", "Does {E} open on Sunday?", "Is {E} closed on Sundays, not open?"),
    ("Explain how {E} makes money.", "How does {E} earn its revenue?", None),
    ("Set a reminder for {N} minutes.", "Remind me in {N} minutes.", None),
    ("Is a {N} GB plan enough for a month of streaming?", "Will {N} GB of data last a month of streaming?",
     "Is a {N} GB plan not enough for a month of streaming?"),
    ("What is the weather usually like in {E} in July?", "How is the typical July weather in {E}?", None),
    ("Who founded {E}?", "Who was the founder of {E}?", None),
    ("How many calories are in {N} grams of rice?", "What is the calorie count of {N} grams of rice?", None),
    ("Does {E} support two-factor authentication?", "Is two-factor authentication available on {E}?",
     "Does {E} not support two-factor authentication?"),
    ("Write a {N}-word product description for a coffee mug.",
     "Draft a product description of {N} words for a coffee mug.", None),
    ("What are the side effects of taking {N} mg of ibuprofen?",
     "Which side effects can {N} mg of ibuprofen cause?", None),
]
ENTITIES = ["France", "Japan", "Brazil", "Norway", "Kenya", "Canada", "Apple", "Google", "Tesla", "Netflix"]
NUMBERS = ["3", "5", "7", "12", "40", "100", "250", "1000"]

# Same words, another question: must not hit (no number, negation or name tells them apart).
NEAR_TOPICS: list[tuple[str, str]] = [
    ("How do I make a cake?", "How do I decorate a cake?"),
    ("What is the best way to learn python?", "What is the best way to teach python?"),
    ("How do I open a bank account?", "How do I close a bank account?"),
    ("What are the benefits of running?", "What are the risks of running?"),
    ("How do I install the printer driver?", "How do I uninstall the printer driver?"),
    ("What should I eat before a workout?", "What should I eat after a workout?"),
    ("How do I increase my credit score?", "How do I check my credit score?"),
    ("Write an email accepting the job offer.", "Write an email declining the job offer."),
    ("What is the cheapest way to travel by train?", "What is the fastest way to travel by train?"),
    ("How do I turn on dark mode?", "How do I turn off dark mode?"),
    ("Explain how vaccines work.", "Explain how antibiotics work."),
    ("What causes inflation?", "What causes deflation?"),
    ("How do I upload a file?", "How do I download a file?"),
    ("Write a poem about summer.", "Write a poem about winter."),
    ("How to grow tomatoes indoors?", "How to grow tomatoes outdoors?"),
    ("What is the minimum wage?", "What is the maximum wage?"),
    ("How do I encrypt a file?", "How do I decrypt a file?"),
    ("Describe the advantages of remote work.", "Describe the disadvantages of remote work."),
    ("How do I add a user to the group?", "How do I remove a user from the group?"),
    ("What is a good breakfast for weight loss?", "What is a good breakfast for weight gain?"),
]


def fill(text: str, entity: str, number: str) -> str:
    return text.replace("{E}", entity).replace("{N}", number)


def pairs() -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for t, (question, paraphrase, negated) in enumerate(TEMPLATES):
        uses_e, uses_n = "{E}" in question, "{N}" in question
        for k in range(4):  # four fillings per template
            e = ENTITIES[(t + 3 * k) % len(ENTITIES)]
            n = NUMBERS[(t + 2 * k) % len(NUMBERS)]
            asked = fill(question, e, n)
            out.append({"a": asked, "b": fill(paraphrase, e, n), "label": "hit", "kind": "paraphrase"})
            if negated is not None:
                out.append({"a": asked, "b": fill(negated, e, n), "label": "miss", "kind": "negation"})
            if k > 1:
                continue
            if uses_n:
                other = NUMBERS[(t + 2 * k + 3) % len(NUMBERS)]
                out.append({"a": asked, "b": fill(paraphrase, e, other), "label": "miss", "kind": "number"})
                out.append({"a": asked, "b": fill(question, e, other), "label": "miss", "kind": "number"})
            if uses_e:
                other = ENTITIES[(t + 3 * k + 5) % len(ENTITIES)]
                out.append({"a": asked, "b": fill(paraphrase, other, n), "label": "miss", "kind": "entity"})
                out.append({"a": asked, "b": fill(question, other, n), "label": "miss", "kind": "entity"})
    out += [{"a": a, "b": b, "label": "miss", "kind": "near topic"} for a, b in NEAR_TOPICS]
    return out


def main() -> None:
    rows = pairs()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"{len(rows)} pairs -> {OUT}: {kinds}")


if __name__ == "__main__":
    main()
