"""Generate the bundled example data of the text-classification template.

Support-desk messages for six banking intents plus ``other`` (off-topic requests the desk does
not handle), written from phrase patterns and slot values made up for Forgeline. Run from the
repository root; it rewrites ``src/forgeline/templates/text-classification/data/train.csv``.
"""

from __future__ import annotations

import csv
import itertools
import random
from pathlib import Path

INTENTS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "lost_card": (
        [
            "I lost my {card}",
            "my {card} was stolen",
            "I can't find my {card} anywhere",
            "please block my {card}, I think I lost it",
            "someone took my {card} {when}",
            "how do I report a missing {card}",
            "{card} gone, what do I do",
            "I left my {card} at a shop {when} and now it's gone",
        ],
        {
            "card": ["card", "debit card", "credit card", "bank card", "visa card"],
            "when": ["yesterday", "this morning", "last night", "on the train", "today"],
        },
    ),
    "check_balance": (
        [
            "what is my {account} balance",
            "how much money is in my {account}",
            "show me the balance of my {account}",
            "can you tell me how much I have in {account}",
            "balance on {account} please",
            "do I have enough money in my {account} {when}",
            "check my {account} balance",
        ],
        {
            "account": [
                "account",
                "checking account",
                "savings account",
                "current account",
                "joint account",
            ],
            "when": ["right now", "today", "for rent", "before payday"],
        },
    ),
    "transfer_money": (
        [
            "send {amount} to {person}",
            "transfer {amount} from my savings to my checking",
            "I want to wire {amount} to {person}",
            "how do I move {amount} to {person}'s account",
            "pay {person} {amount}",
            "make a transfer of {amount} to {person}",
            "can I send money to {person} {when}",
        ],
        {
            "amount": ["50 dollars", "$200", "100 euros", "300", "a thousand dollars", "25 pounds"],
            "person": ["my mom", "John", "my landlord", "Maria", "my brother"],
            "when": ["today", "tomorrow", "right now", "every month"],
        },
    ),
    "reset_password": (
        [
            "I forgot my {secret}",
            "reset my {secret}",
            "how do I change my {secret}",
            "I'm locked out of {place}",
            "my {secret} doesn't work anymore",
            "can't log in to {place}, need a new {secret}",
            "help me recover my {secret}",
        ],
        {
            "secret": ["password", "PIN", "login password", "online banking password", "passcode"],
            "place": ["the app", "online banking", "my account", "the website"],
        },
    ),
    "cancel_subscription": (
        [
            "cancel my {plan}",
            "I want to stop my {plan}",
            "how do I unsubscribe from the {plan}",
            "please end my {plan} {when}",
            "stop charging me for the {plan}",
            "terminate my {plan}",
            "I no longer want the {plan}",
        ],
        {
            "plan": [
                "premium plan",
                "subscription",
                "monthly plan",
                "card insurance",
                "overdraft protection",
            ],
            "when": ["today", "at the end of the month", "immediately", "next month"],
        },
    ),
    "opening_hours": (
        [
            "when does the {branch} open",
            "what are your opening hours {when}",
            "is the {branch} open {when}",
            "what time does the {branch} close",
            "are you open {when}",
            "opening times of the {branch}",
        ],
        {
            "branch": ["branch", "downtown branch", "office", "bank", "airport branch"],
            "when": ["on Saturday", "on Sunday", "today", "tomorrow", "on public holidays"],
        },
    ),
    "other": (
        [
            "what's the weather like {when}",
            "tell me a joke",
            "who won the {game} {when}",
            "play some music",
            "what's a good recipe for {food}",
            "how tall is the eiffel tower",
            "recommend a movie for {when}",
            "how do I cook {food}",
            "translate hello into {language}",
            "what is the capital of {language_country}",
        ],
        {
            "when": ["today", "tomorrow", "this weekend", "tonight"],
            "game": ["football game", "match", "world cup", "race"],
            "food": ["pasta", "pancakes", "rice", "soup"],
            "language": ["spanish", "french", "german", "italian"],
            "language_country": ["france", "spain", "peru", "japan"],
        },
    ),
}
PER_INTENT = 45


def expand(patterns: list[str], slots: dict[str, list[str]], rng: random.Random) -> list[str]:
    texts = set()
    for pattern in patterns:
        names = [n for n in slots if "{" + n + "}" in pattern]
        for values in itertools.product(*(slots[n] for n in names)):
            texts.add(pattern.format(**dict(zip(names, values, strict=True))))
    ordered = sorted(texts)
    rng.shuffle(ordered)
    return ordered[:PER_INTENT]


def main() -> None:
    rng = random.Random(7)
    rows = [(text, intent) for intent, (p, s) in INTENTS.items() for text in expand(p, s, rng)]
    rng.shuffle(rows)
    target = Path("src/forgeline/templates/text-classification/data/train.csv")
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {target}")


if __name__ == "__main__":
    main()
