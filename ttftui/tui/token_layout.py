"""Word-wrapped lines of a run's output, built incrementally as tokens arrive.

The token stream panel redraws a few times a second while the engine decodes. Re-wrapping the
whole visible text on every frame made it the most expensive thing the dashboard did (it costs the
engine CPU on a machine where llama.cpp uses every core). Here each token is placed once: lines that
are complete never change again, and only the last, open line grows. A line is a tuple of
fragments ``(token_index, text)``, so the panel can colour each token by its own latency.

Wrapping follows the usual terminal rules: break after the last space that fits; a word longer than
the line is folded at the width; ``\\n`` in a token ends the line. Widths are terminal cells (wide
characters count two).
"""

from __future__ import annotations

from rich.cells import get_character_cell_size

Fragment = tuple[int, str]  # (token index, text of that token on this line)


class TokenLayout:
    def __init__(self, width: int):
        self.width = max(width, 1)
        self.lines: list[tuple[Fragment, ...]] = []  # complete lines: never change again
        self._open: list[tuple[str, int, int]] = []  # the last line: (char, token index, cells)
        self._open_cells = 0
        self.n_tokens = 0  # tokens placed so far

    def add(self, index: int, text: str) -> None:
        """Place token ``index`` (its text already made safe to draw) after everything before it."""
        for ch in text:
            if ch == "\n":
                self._wrap()
                self._close(len(self._open))
                continue
            cells = get_character_cell_size(ch)
            self._open.append((ch, index, cells))
            self._open_cells += cells
        self._wrap()
        self.n_tokens = index + 1

    def __len__(self) -> int:
        """Number of lines, the open one included."""
        return len(self.lines) + 1

    def line(self, k: int) -> tuple[Fragment, ...]:
        return self.lines[k] if k < len(self.lines) else _fragments(self._open)

    def open_size(self) -> int:
        """Characters on the open line (what tells one state of it from the next)."""
        return len(self._open)

    def _wrap(self) -> None:
        while self._open_cells > self.width:
            used = fit = 0
            cut = None
            for k, (ch, _, cells) in enumerate(self._open):
                if used + cells > self.width:
                    break
                used += cells
                fit = k + 1
                if ch == " ":
                    cut = k + 1  # break after the space
            self._close(cut or max(fit, 1))

    def _close(self, n: int) -> None:
        """End a line after the first ``n`` characters of the open line."""
        done, self._open = self._open[:n], self._open[n:]
        self.lines.append(_fragments(done))
        self._open_cells = sum(c for _, _, c in self._open)


def _fragments(chars: list[tuple[str, int, int]]) -> tuple[Fragment, ...]:
    out: list[Fragment] = []
    buf: list[str] = []
    owner = None
    for ch, index, _ in chars:
        if index != owner and buf:
            out.append((owner, "".join(buf)))  # type: ignore[arg-type]
            buf = []
        owner = index
        buf.append(ch)
    if buf:
        out.append((owner, "".join(buf)))  # type: ignore[arg-type]
    return tuple(out)
