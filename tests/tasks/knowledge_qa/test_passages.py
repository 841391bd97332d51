from __future__ import annotations

from forgeline.tasks.knowledge_qa.passages import split_document

GUIDE = """Intro before any heading.

# Cards
## Lost card

Call us at once.
We block it.

Then order a new one.

### Abroad
Use the emergency line.

```
# not a heading: code
```
## Fees
"""


def test_passages_carry_their_heading_path_and_line() -> None:
    passages = split_document(GUIDE, 200, markdown=True)
    assert [(p.headings, p.line) for p in passages] == [
        ((), 1),
        (("Cards", "Lost card"), 6),
        (("Cards", "Lost card", "Abroad"), 12),
    ]
    assert passages[1].text == "Call us at once. We block it.\n\nThen order a new one."
    assert "# not a heading: code" in passages[2].text  # inside a fence: text, not a heading


def test_long_sections_are_cut_between_paragraphs_then_sentences() -> None:
    sentence = "one two three four five. "
    text = "# A\n\n" + sentence * 3 + "\n\n" + "six seven.\n"
    passages = split_document(text, 10, markdown=True)
    assert [len(p.text.split()) for p in passages] == [10, 7]
    assert all(p.headings == ("A",) for p in passages)


def test_plain_text_has_no_headings() -> None:
    passages = split_document("# not markdown\n\nsecond paragraph", 200, markdown=False)
    assert [p.headings for p in passages] == [()]
    assert passages[0].text.startswith("# not markdown")
