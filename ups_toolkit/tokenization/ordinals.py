"""English ordinal words for coordinate and temporal prompts: 1 -> "first", 22 -> "twenty-second",
1000 -> "one thousandth" (docs/design.md D3).

American style: no "and" ("one hundred first"), tens and units hyphenated ("ninety-ninth").
"""

from __future__ import annotations

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"), (100, "hundred"))
_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
              "nine": "ninth", "twelve": "twelfth"}


def cardinal_words(n: int) -> str:
    """English words of a non-negative integer below 10**12: 121 -> "one hundred twenty-one"."""
    if not 0 <= n < 10**12:
        raise ValueError(f"cardinal_words needs 0 <= n < 10**12, got {n}")
    if n < 20:
        return _UNITS[n]
    if n < 100:
        tens, units = divmod(n, 10)
        return _TENS[tens] + (f"-{_UNITS[units]}" if units else "")
    for value, word in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{cardinal_words(head)} {word}" + (f" {cardinal_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _ordinal_of_word(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("y"):  # twenty -> twentieth
        return word[:-1] + "ieth"
    return word + "th"


def ordinal_words(n: int) -> str:
    """English ordinal of a positive integer: 1 -> "first", 1000 -> "one thousandth"."""
    if n < 1:
        raise ValueError(f"ordinals start at 1, got {n}")
    words = cardinal_words(n)
    head, sep, last = words.rpartition(" ")
    stem, hyphen, unit = last.rpartition("-")  # "twenty-one" -> "twenty-first"
    return head + sep + stem + hyphen + _ordinal_of_word(unit)
