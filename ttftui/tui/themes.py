"""Themes as data: TOML files validated by pydantic, turned into Textual themes plus ttftui's own
component colours (stacked-bar segments, ITL colours, REAL/SYNTHETIC badges).

Built-in themes live in the repository's ``themes/`` folder, which is installed as the
``ttftui.themes`` package, so they load the same from a checkout and from a wheel. ``ui.theme`` in
config.toml names a built-in theme or points to a file. A bad theme never stops the dashboard: the
loader reports one clear line and the default theme is used instead.
"""

from __future__ import annotations

import tomllib
from importlib import resources

from pydantic import ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

from ttftui.core.config import format_validation_error
from ttftui.core.inputs import MAX_THEME_BYTES, InputRefused, expand_path, read_regular
from ttftui.core.rules import Strict

DEFAULT_THEME = "dark"


def _color(v: str) -> str:
    try:
        Color.parse(v)
    except ColorParseError:
        raise ValueError(f"{v!r} is not a colour (use e.g. \"#1D4ED8\" or \"red\")") from None
    return v


class _Colors(Strict):
    @field_validator("*")
    @classmethod
    def _valid(cls, v: str) -> str:
        return _color(v)


class TextualColors(_Colors):
    primary: str
    secondary: str
    accent: str
    foreground: str
    background: str
    surface: str
    panel: str
    warning: str
    error: str
    success: str


class ComponentColors(_Colors):
    tokenize: str
    cache_prep: str
    prefill: str
    prefill_alt: str
    first_sample: str
    first_detok: str
    unaccounted: str
    pending: str


class ItlColors(_Colors):
    fast: str
    normal: str
    slow: str
    spike: str


class BadgeColors(_Colors):
    real: str
    synthetic: str
    replay: str


class ThemeFile(Strict):
    name: str
    dark: bool
    textual: TextualColors
    components: ComponentColors
    itl: ItlColors
    badges: BadgeColors

    def textual_theme(self) -> Theme:
        t = self.textual
        return Theme(
            name=f"ttftui-{self.name}", primary=t.primary, secondary=t.secondary, accent=t.accent,
            foreground=t.foreground, background=t.background, surface=t.surface, panel=t.panel,
            warning=t.warning, error=t.error, success=t.success, dark=self.dark,
        )


class ThemeLoadError(Exception):
    """A theme that cannot be used; the message is one line naming the file and the problem."""


def builtin_theme_names() -> list[str]:
    folder = resources.files("ttftui.themes")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def _read(source: str, data: bytes) -> ThemeFile:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except ValueError as e:  # not UTF-8, not TOML, or a value Python cannot hold (an integer of 5,000 digits)
        raise ThemeLoadError(f"{source}: invalid TOML: {str(e).split(';')[0]}") from None
    except RecursionError:  # [[[[... thousands deep
        raise ThemeLoadError(f"{source}: arrays or tables nested too deeply to be a theme") from None
    try:
        return ThemeFile.model_validate(raw)
    except RecursionError:
        raise ThemeLoadError(f"{source}: arrays or tables nested too deeply to be a theme") from None
    except ValidationError as e:
        raise ThemeLoadError(format_validation_error(source, e)) from None


def load_theme(spec: str) -> ThemeFile:
    """A built-in theme by name, or a theme file by path."""
    if spec in builtin_theme_names():
        f = resources.files("ttftui.themes").joinpath(f"{spec}.toml")
        return _read(f"themes/{spec}.toml", f.read_bytes())
    p = expand_path(spec)
    if p.suffix == ".toml" or p.exists():
        try:
            return _read(str(p), read_regular(p, MAX_THEME_BYTES))
        except InputRefused as e:
            raise ThemeLoadError(f"theme file: {e}") from None
        except OSError as e:
            raise ThemeLoadError(f"theme file {p}: {e.strerror or e}") from None
    raise ThemeLoadError(f"unknown theme {spec!r} (built-in: {', '.join(builtin_theme_names())}; or a path to a .toml)")


def load_theme_or_default(spec: str) -> tuple[ThemeFile, str | None]:
    """(theme, problem): falls back to the default theme and says why, instead of failing."""
    try:
        return load_theme(spec), None
    except ThemeLoadError as e:
        return load_theme(DEFAULT_THEME), f"{e}; using the default theme"
