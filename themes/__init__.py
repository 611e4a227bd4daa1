"""ttftui's theme files (TOML). Installed as the ``ttftui.themes`` package so that they load from a
wheel exactly as from a checkout; see ttftui/tui/themes.py for the format and its validation."""
