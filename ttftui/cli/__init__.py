"""Command line front ends: parsing and dispatch (:mod:`.main`), headless runs, ``doctor`` and
``serve``. The dashboard itself is :mod:`ttftui.tui`."""
