"""The HTML page of :mod:`squeezer.report` (see there)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from squeezer.errors import SqueezerError

SECTION_KINDS = ("sensitivity", "search", "recipe", "other")

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
.meta { color: #666; font-size: 0.85em; } .bad { color: #a00; } .good { color: #070; }
"""


class ReportError(SqueezerError):
    """The folder or a file in it cannot be reported."""


def kind_of(data: Any) -> str:
    """Which kind of section a command's JSON makes (one of :data:`SECTION_KINDS`)."""
    if not isinstance(data, dict):
        return "other"
    if {"setting", "values", "layers", "baseline"} <= set(data):
        return "sensitivity"
    if isinstance(data.get("search"), dict) or {"trials", "pareto", "method"} <= set(data):
        return "search"
    if (
        isinstance(data.get("stages"), list)
        and data["stages"]
        and isinstance(data["stages"][0], dict)
    ):
        return "recipe"
    return "other"


def _png(draw: Callable[[Any], None], size: tuple[float, float] = (7, 4)) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    try:
        draw(ax)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return _esc(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return _esc(v)


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _sensitivity(data: dict[str, Any]) -> str:
    values = data["values"]
    base = data["baseline"].get("top1")
    numeric = all(isinstance(v, int | float) for v in values)
    xs = values if numeric else list(range(len(values)))

    def draw(ax: Any) -> None:
        for name, points in data["layers"].items():
            ys = [100 * p["top1"] if p.get("top1") is not None else math.nan for p in points]
            ax.plot(xs, ys, marker="o", label=name)
        if base is not None:
            ax.axhline(100 * base, color="gray", linestyle="--", label="model")
        ax.set_xlabel(data["setting"])
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"{data.get('method', '')}: each layer compressed alone")
        ax.legend(fontsize=7, ncol=2 if len(data["layers"]) > 8 else 1)

    rows = []
    for name, points in data["layers"].items():
        cells = []
        for p in points:
            d = p.get("drop")
            cells.append("n/a" if d is None else f"{d:+.2f}")
        rows.append([_esc(name), *cells])
    intro = (f"<p>{_esc(data.get('method', ''))}, varying <b>{_esc(data['setting'])}</b>; top-1 "
             f"drop in points from {100 * base:.2f}% on {_num(data.get('examples', '?'))} "
             "examples.</p>") if base is not None else ""  # fmt: skip
    return intro + _png(draw) + _table(["layer", *[str(v) for v in values]], rows)


def _search(data: dict[str, Any]) -> str:
    s = data["search"] if isinstance(data.get("search"), dict) else data
    trials = s.get("trials", [])
    front = set(s.get("pareto", []))
    best = s.get("best")
    out = []
    budget = (s.get("budget") or {}).get("describe", "")
    out.append(f"<p>{_esc(s.get('method', ''))} search, {len(trials)} trials"
               + (f", budget {_esc(budget)}" if budget else "")
               + f"; {s.get('cpu_minutes', 0):.1f} CPU-minutes.</p>")  # fmt: skip
    if trials:

        def draw(ax: Any) -> None:
            red = [t["reduction"] for t in trials]
            acc = [100 * t["accuracy"] for t in trials]
            ax.scatter(red, acc, s=14, alpha=0.6, label="trials")
            pts = sorted((t["reduction"], 100 * t["accuracy"]) for t in trials
                         if t["number"] in front)  # fmt: skip
            if pts:
                ax.plot(*zip(*pts, strict=True), color="C1", marker="o", label="Pareto front")
            if best:
                ax.scatter([best["reduction"]], [100 * best["accuracy"]], s=90, marker="*",
                           color="C3", zorder=5, label="chosen")  # fmt: skip
            if s.get("original_accuracy") is not None:
                ax.axhline(100 * s["original_accuracy"], color="gray", linestyle="--",
                           label="original")  # fmt: skip
            ax.set_xlabel(f"{s.get('metric', 'cost')} reduction (x)")
            ax.set_ylabel("validation top-1 (%)")
            ax.legend(fontsize=8)

        out.append(_png(draw))
    if best and best.get("settings"):
        names = list(best["settings"])
        values = [best["settings"][n] for n in names]
        fraction = all(isinstance(v, float) and 0 <= v <= 1 for v in values)
        label = "channels removed (%)" if fraction else "bits"
        shown = [100 * v if fraction else v for v in values]

        def bars(ax: Any) -> None:
            ax.bar(range(len(names)), shown)
            ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
            ax.set_ylabel(label)
            ax.set_title("chosen per-layer setting")

        out.append(_png(bars, (7, 3.6)))
        cells = [[_esc(n), f"{v:.1f}%" if fraction else str(v)]
                 for n, v in zip(names, shown, strict=True)]  # fmt: skip
        out.append(_table(["layer or group", label], cells))
    on_front = sorted((t for t in trials if t["number"] in front), key=lambda t: t["reduction"])
    if on_front:
        points = ", ".join(f"{t['reduction']:.2f}x {100 * t['accuracy']:.2f}%" for t in on_front)
        out.append(f"<p>Pareto front (reduction, validation top-1): {points}</p>")
    top = sorted(trials, key=lambda t: -t["accuracy"])[:10]
    out.append(_table(["trial", "val top-1", "reduction", "seconds"],
                      [[str(t["number"]), f"{100 * t['accuracy']:.2f}%",
                        f"{t['reduction']:.2f}x", f"{t.get('seconds', 0):.1f}"]
                       for t in top]))  # fmt: skip
    extra = {k: v for k, v in data.items() if k != "search" and not isinstance(v, dict | list)}
    if extra:
        out.append(_scalars(extra))
    return "".join(out)


def _recipe(data: dict[str, Any]) -> str:
    stages = data["stages"]
    names = [st.get("name", "?") for st in stages]

    def draw(ax: Any) -> None:
        ax.bar(range(len(names)), [st.get("size_bytes", 0) / 1024 for st in stages], color="C0")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("size (KiB)")
        twin = ax.twinx()
        twin.plot(range(len(names)), [100 * st.get("top1", math.nan) for st in stages],
                  color="C3", marker="o")  # fmt: skip
        twin.set_ylabel("top-1 (%)", color="C3")
        ax.set_title("size and accuracy per stage")

    keys = [k for k in stages[0] if k != "name"]
    rows = [[_esc(st.get("name"))] + [_num(st.get(k)) for k in keys] for st in stages]
    scal = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    return _png(draw) + _table(["stage", *keys], rows) + _scalars(scal)


def _scalars(data: dict[str, Any]) -> str:
    rows = [[_esc(k), _num(v)] for k, v in data.items() if not isinstance(v, dict | list)]
    return _table(["field", "value"], rows) if rows else ""


def _other(data: Any) -> str:
    if isinstance(data, dict):
        parts = [_scalars(data)]
        for k, v in data.items():
            if (
                isinstance(v, dict)
                and v
                and all(not isinstance(x, dict | list) for x in v.values())
            ):
                parts.append(f"<h3>{_esc(k)}</h3>" + _scalars(v))
        return "".join(parts)
    return f"<pre>{_esc(json.dumps(data, indent=1)[:5000])}</pre>"


RENDER = {"sensitivity": _sensitivity, "search": _search, "recipe": _recipe, "other": _other}


def render_html(files: list[Path], title: str = "squeezer report") -> str:
    """The page for ``files`` (JSON), one section each, in the order given."""
    sections = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            sections.append(f"<h2>{_esc(path.name)}</h2><p class='bad'>not readable JSON: "
                            f"{_esc(str(exc).splitlines()[0])}</p>")  # fmt: skip
            continue
        kind = kind_of(data)
        try:
            body = RENDER[kind](data)
        except (KeyError, TypeError, ValueError) as exc:  # a file of an unexpected shape
            body = f"<p class='bad'>could not draw this {kind} file ({_esc(exc)}); its fields:</p>"
            body += _other(data)
        sections.append(f"<h2>{_esc(path.name)} <span class='meta'>({kind})</span></h2>{body}")
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p class='meta'>{len(files)} result file(s), written {when} by "
        "squeezer.</p>" + "".join(sections) + "</body></html>\n"
    )


def write_html(folder: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write the report of every ``*.json`` in ``folder`` (sorted by name) to ``out``
    (default ``folder/report.html``).

    Raises:
        ReportError: ``folder`` is not a folder or holds no JSON file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ReportError(f"{folder}: no .json result files (write them with --json)")
    target = Path(out) if out is not None else folder / "report.html"
    text = render_html(files, title or f"squeezer report: {folder.resolve().name}")
    try:
        target.write_text(text)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
