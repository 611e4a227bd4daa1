"""Dashboard panels, one per module. Each is fed the folded session state by the app (``show(...)``)
and redraws only when what it shows has changed; none of them measures anything or talks to the engine."""

from ttftui.tui.widgets.alerts import AlertsPanel
from ttftui.tui.widgets.panel import LinePanel, Panel
from ttftui.tui.widgets.percentile_table import PercentileTable, table_metrics
from ttftui.tui.widgets.status import StatusBar
from ttftui.tui.widgets.telemetry_panel import TelemetryPanel
from ttftui.tui.widgets.token_stream import TokenStream
from ttftui.tui.widgets.ttft_bar import TTFTBar

__all__ = ["AlertsPanel", "LinePanel", "Panel", "PercentileTable", "StatusBar", "TelemetryPanel", "TokenStream",
           "TTFTBar", "table_metrics"]


