"""Reports: one self-contained HTML page from the JSON files the commands write.

    squeezer report runs/vgg11            # writes runs/vgg11/report.html
    sq.report.write_html("runs/vgg11", "report.html")

Each JSON file in the folder becomes a section, drawn according to what it holds:
sensitivity scans (one curve per layer and the table of drops), policy searches (the trials'
accuracy against cost reduction with the Pareto front and the chosen per-layer ratios),
recipe runs (size and accuracy per stage) and anything else (its numbers as a table). Plots
are PNGs embedded as data URLs, styles are inline: the page needs no other file and no
network.
"""

from __future__ import annotations

from squeezer.report.html import SECTION_KINDS, kind_of, render_html, write_html

__all__ = ["SECTION_KINDS", "kind_of", "render_html", "write_html"]
