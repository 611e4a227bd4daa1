"""The token stream's incremental word wrap: lines hold (token index, text) fragments."""

from __future__ import annotations

import random

from rich.cells import cell_len

from ttftui.tui.token_layout import TokenLayout


def texts(lay: TokenLayout) -> list[str]:
    return ["".join(t for _, t in lay.line(k)) for k in range(len(lay))]


def test_wraps_after_the_last_space_that_fits():
    lay = TokenLayout(10)
    for i, tok in enumerate(["The", " quick", " brown", " fox"]):
        lay.add(i, tok)
    assert texts(lay) == ["The quick ", "brown fox"]
    # the fragments say which token each piece of text came from
    assert lay.line(0) == ((0, "The"), (1, " quick"), (2, " "))
    assert lay.line(1) == ((2, "brown"), (3, " fox"))


def test_a_word_longer_than_the_line_is_folded():
    lay = TokenLayout(4)
    lay.add(0, "abcdefghij")
    assert texts(lay) == ["abcd", "efgh", "ij"]


def test_newline_in_a_token_ends_the_line():
    lay = TokenLayout(20)
    lay.add(0, "one\ntwo")
    lay.add(1, "\n")
    lay.add(2, "three")
    assert texts(lay) == ["one", "two", "three"]
    assert lay.line(1) == ((0, "two"),)


def test_wide_characters_count_two_cells():
    lay = TokenLayout(5)
    lay.add(0, "日本語")  # 6 cells
    assert texts(lay) == ["日本", "語"]


def test_complete_lines_never_change_and_incremental_equals_all_at_once():
    rnd = random.Random(4)
    words = ["a", "tiny", " token", " supercalifragilistic", "\n", " x", "，", "日本", " ", "  "]
    toks = [rnd.choice(words) for _ in range(400)]
    lay = TokenLayout(17)
    seen: list[tuple] = []
    for i, t in enumerate(toks):
        lay.add(i, t)
        for k, line in enumerate(seen):
            assert lay.line(k) == line  # a line, once complete, is never rewritten
        seen = [lay.line(k) for k in range(len(lay) - 1)]
    whole = TokenLayout(17)
    whole.add(0, "".join(toks))
    assert texts(lay) == texts(whole)
    assert "".join(texts(lay)) == "".join(toks).replace("\n", "")
    assert all(cell_len(line) <= 17 for line in texts(lay))
