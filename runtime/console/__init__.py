"""The web console for SREs and auditors: incident list, incident page (charts, diagnosis,
proposal, approve/reject, audit timeline) and constitution status, served by the daemon's app.

`mount_console(app, service=..., auth=..., series=..., audit=..., status=..., clock=...)` adds
the pages under ``/console``. Server-rendered with Jinja2 and a few lines of JavaScript; no
build step, nothing fetched from the internet.
"""

from runtime.console._app import APPROVER_ROLE, ConsoleSettings, mount_console
from runtime.console._views import ChartWindow
from runtime.console.charts import ChartSpec, Marker, render_chart
from runtime.console.ports import AuditTrail, SeriesQuery

__all__ = [
    "APPROVER_ROLE",
    "AuditTrail",
    "ChartSpec",
    "ChartWindow",
    "ConsoleSettings",
    "Marker",
    "SeriesQuery",
    "mount_console",
    "render_chart",
]
