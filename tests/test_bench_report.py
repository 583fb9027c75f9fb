"""The benchmark report builder: tables, sections and images in one folder."""
from __future__ import annotations

from bench.report import Report, markdown_table


def test_markdown_table_formats_numbers_and_missing_values():
    table = markdown_table(["name", "value", "other"], [["a", 1.23456, None], ["b", float("nan"), 7]])
    assert table.splitlines() == ["| name | value | other |", "|---|---|---|", "| a | 1.23 | - |", "| b | nan | 7 |"]


def test_report_keeps_section_order_and_shows_images_from_its_folder(tmp_path):
    report = Report(tmp_path / "report", "Title")
    report.section("First", "text one")
    inside = report.image_path("plot.png")
    inside.write_bytes(b"png")
    report.add_image(inside, "a plot")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"png too")
    report.section("Second", "text two")
    report.add_image(outside, "copied")
    text = report.write().read_text()
    assert text.startswith("# Title")
    assert text.index("## First") < text.index("![a plot](plot.png)") < text.index("## Second")
    assert "![copied](elsewhere.png)" in text
    assert (tmp_path / "report" / "elsewhere.png").read_bytes() == b"png too"
