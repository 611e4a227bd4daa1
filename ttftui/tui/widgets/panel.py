"""The panels' common ground: redraw only when what a panel shows has changed (Panel), and
line-by-line painting for the panels that change a few lines at a time (LinePanel)."""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Static

from ttftui.tui.themes import ThemeFile


class Panel(Static):
    """A Static with a border title; ``theme`` is set by the app before the first ``show``.

    ``show(*args)`` keeps its inputs and draws (``draw(*args)``) only when ``view_key(*args)`` has
    changed and the panel is on screen. A panel that was hidden or not laid out yet when its inputs
    arrived draws them as soon as it gets a size (``on_resize``), not at the app's next frame, which
    may be a second away while a prefill runs."""

    can_focus = True

    def __init__(self, title: str, **kw: Any):
        super().__init__(**kw)
        self.border_title = title
        self.theme_file: ThemeFile | None = None
        self._key: Any = None
        self._args: tuple[Any, ...] | None = None
        self._lines = -1

    def set_theme(self, theme: ThemeFile) -> None:
        """A new theme: the next ``show`` redraws whatever it is given."""
        self.theme_file = theme
        self._key = None

    def view_key(self, *args: Any) -> Any:
        """What the panel shows, as a comparable value: equal keys mean nothing to redraw."""
        raise NotImplementedError

    def draw(self, *args: Any) -> None:
        raise NotImplementedError

    def show(self, *args: Any) -> None:
        self._args = args
        if self.changed(self.view_key(*args)):
            self.refresh_view()

    def changed(self, key: Any) -> bool:
        """Redraw only when what the panel shows has changed, and only while it is on screen."""
        if self.size.area == 0:  # hidden (panel toggled off or maximized away): draw when shown again
            self._key = None
            return False
        if key == self._key:
            return False
        self._key = key
        return True

    def on_resize(self) -> None:
        if self._args is not None and self.size.area:
            self._key = self.view_key(*self._args)
        self.refresh_view()  # new size (or first size): draw what we were last given
        # A layout asked for while the resize is handled is folded into the layout that caused it
        # and lost: a height:auto panel drawn here kept the height of its previous content (the TTFT
        # breakdown stayed one line high for good). Ask again once that layout is done.
        self.call_after_refresh(self._fit_height)

    def _fit_height(self) -> None:
        if self._lines >= 0 and self.styles.height is not None and self.styles.height.is_auto \
                and self.content_size.height != self._lines + 1:
            self.refresh(layout=True)

    def refresh_view(self) -> None:
        if self._args is None or self.theme_file is None or self.size.area == 0:
            return
        self.draw(*self._args)

    @property
    def content_lines(self) -> int:
        """Lines of what the panel last drew."""
        return max(self._lines + 1, 1)

    def update_sized(self, content: Text) -> None:
        """Update a height:auto panel; re-layout the screen only when its line count changes (a full
        re-layout repaints every widget, which is most of what a redraw costs)."""
        n = content.plain.count("\n")
        self.update(content, layout=n != self._lines)
        self._lines = n


class LinePanel(Panel):
    """A panel drawn line by line (Textual's line API): every visible row is kept as a rendered
    strip with a key saying what it shows, and a draw re-renders and repaints only the rows whose
    key changed. A Static re-renders all of its text through Textual's content pipeline on every
    update (several ms for a dozen lines), and each of those milliseconds is taken from the engine."""

    def __init__(self, title: str, **kw: Any):
        super().__init__(title, **kw)
        self._row_keys: list[Any] = []
        self._rows: list[Strip] = []
        self._texts: list[str] = []

    def render_line(self, y: int) -> Strip:
        if y < len(self._rows):
            return self._rows[y]
        return Strip.blank(self.content_size.width, self.rich_style)

    def visible_text(self) -> str:
        """What the panel shows, as plain text (one line per row)."""
        return "\n".join(self._texts).rstrip("\n")

    @property
    def drawn_rows(self) -> int:
        """How many rows the last draw laid out: the panel's height once it has drawn at its size."""
        return len(self._rows)

    def _paint(self, rows: list[tuple[Any, Any]], width: int, height: int) -> None:
        """``rows``: (key, a Text or a line of token fragments). Render the rows whose key changed and
        repaint only those (the whole panel after a resize)."""
        resized = len(self._rows) != height or (self._rows and self._rows[0].cell_length != width)
        if resized:
            self._row_keys = [None] * height
            self._rows = [Strip.blank(width, self.rich_style)] * height
            self._texts = [""] * height
        base = self.rich_style
        changed: list[int] = []
        for y in range(height):
            key, what = rows[y] if y < len(rows) else (("blank",), None)
            key = (key, width)
            if self._row_keys[y] == key:
                continue
            self._row_keys[y] = key
            if what is None:
                strip, text = Strip.blank(width, base), ""
            elif isinstance(what, Text):
                what.truncate(width, overflow="ellipsis")
                strip, text = Strip(list(what.render(self.app.console))), what.plain
            else:
                strip, text = _fragment_strip(*what), "".join(t for _, t in what[0])
            self._rows[y] = strip.apply_style(base).adjust_cell_length(width, base)
            self._texts[y] = text
            changed.append(y)
        if resized:
            self.refresh()
        else:
            for y in changed:
                self.refresh(Region(0, y, width, 1))


def _fragment_strip(frags: tuple[tuple[int, str], ...], styles: tuple[str, ...]) -> Strip:
    """One line of tokens; neighbouring tokens of the same colour share a segment."""
    segs: list[Segment] = []
    run_style: str | None = None
    buf: list[str] = []
    for (_, text), style in zip(frags, styles):
        if style != run_style and buf:
            segs.append(Segment("".join(buf), Style.parse(run_style)))  # type: ignore[arg-type]
            buf = []
        run_style = style
        buf.append(text)
    if buf:
        segs.append(Segment("".join(buf), Style.parse(run_style)))  # type: ignore[arg-type]
    return Strip(segs)
