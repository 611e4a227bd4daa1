"""How the dashboard's rows are shared out between its panels, so that the headline never goes.

Textual lays the body out top to bottom: the TTFT breakdown (height auto), the load lanes and the
engine hosts (fixed heights), then the token stream row and the percentile table (1fr each, with a
floor). When the fixed and auto heights leave less than the floors, Textual does not shrink them: it
clips the bottom of the screen, and the table vanished at 80x24 under load. So the app gives each
shrinkable panel an explicit height from :func:`share_rows`, in this order of need:

1. the TTFT breakdown's title, stacked bar and legend (the headline: kept at every size);
2. the floors of the token stream row and of the table (their headers and a line or two);
3. the load lanes' and the engine hosts' own floors (a title line and a row or two);
4. the TTFT breakdown's scenario medians, then the lanes and the hosts up to what they want;
5. whatever is left, to the stream row and the table (their 1fr).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rows:
    """Heights in screen rows, borders included; ``None``: the panel is not shown."""

    ttft: int
    lanes: int | None
    hosts: int | None


def share_rows(body: int, *, border: int, ttft_core: int, ttft_full: int, ttft_cap: int,
               lanes_want: int | None, hosts_want: int | None, middle_floor: int, table_floor: int) -> Rows:
    """``body``: rows for the panels; ``border``: rows a panel's border takes (1 or 2);
    ``ttft_core`` / ``ttft_full``: content lines of the breakdown without / with its medians;
    ``ttft_cap``: its largest height; ``*_want``: a shown panel's preferred height."""
    ttft_full = min(max(ttft_full, ttft_core), ttft_cap - border)
    ttft = border + min(ttft_core, ttft_full)
    floors = {"lanes": border + 2, "hosts": border + 2}
    want = {"lanes": lanes_want, "hosts": hosts_want}
    got = {k: (min(floors[k], w) if w is not None else None) for k, w in want.items()}
    spare = body - ttft - middle_floor - table_floor - sum(v for v in got.values() if v is not None)
    grow = max(0, min(spare, border + ttft_full - ttft))
    ttft, spare = ttft + grow, spare - grow
    for k in ("lanes", "hosts"):
        w, g = want[k], got[k]
        if w is not None and g is not None and spare > 0:
            add = min(spare, w - g)
            got[k], spare = g + add, spare - add
    return Rows(ttft=ttft, lanes=got["lanes"], hosts=got["hosts"])
