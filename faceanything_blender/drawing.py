"""Layout helpers shared by the panel and the preferences: wrapped text and error boxes."""
from __future__ import annotations

import textwrap

CHARS_PER_PIXEL = 1 / 7  # rough width of a character of the default UI font, for wrapping


def draw_wrapped(layout, text: str, context, icon: str = "NONE") -> None:
    """Labels for a long text, wrapped to the region's width (the sidebar is narrow)."""
    region = getattr(context, "region", None)
    width = max(int((region.width if region else 320) * CHARS_PER_PIXEL), 20)
    column = layout.column(align=True)
    for number, line in enumerate(textwrap.wrap(text, width) or [""]):
        column.label(text=line, icon=icon if number == 0 else "BLANK1" if icon != "NONE" else "NONE")


def draw_error(layout, context, message: str, hint: str, log_lines: list[str]) -> None:
    box = layout.box()
    box.alert = True
    draw_wrapped(box, message, context, "ERROR")
    if hint:
        draw_wrapped(box, hint, context)
    if log_lines:
        log = box.column(align=True)
        log.scale_y = 0.8
        log.label(text="The runtime's last messages:")
        for line in log_lines[-8:]:
            log.label(text=line[-200:])
