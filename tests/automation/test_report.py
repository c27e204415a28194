"""``squeezer report``: one self-contained HTML page from the commands' JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from squeezer.report import kind_of, render_html
from test_cli import assert_one_line_error, run


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.open: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag) -> None:
        assert self.open and self.open[-1] == tag, (self.open[-5:], tag)
        self.open.pop()

    def handle_data(self, data) -> None:
        self.text.append(data)


RECIPE = {
    "model": "lenet300", "recipe": "deep-compression", "top1_before": 0.98, "top1_after": 0.979,
    "stages": [
        {"name": "baseline (float32)", "size_bytes": 1066440, "compression_rate": 1.0,
         "top1": 0.98, "seconds": 0.0},
        {"name": "prune", "size_bytes": 120000, "compression_rate": 8.9, "top1": 0.979,
         "seconds": 3.2},
    ],
}  # fmt: skip


def _run_dir(tmp_path: Path, lenet5: Path, fake_mnist: Path, capsys) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    code, _, err = run(capsys, "sensitivity", str(lenet5), "--method", "channels", "--values",
                       "0.25,0.5", "--data-dir", str(fake_mnist), "--val-examples", "20",
                       "--json", str(folder / "sens.json"))  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "search", str(lenet5), "--trials", "3", "--budget", "flops:2",
                       "--data-dir", str(fake_mnist), "--val-examples", "20", "--bn-batches",
                       "1", "--out", str(tmp_path / "s.sqz"), "--json",
                       str(folder / "search.json"), "--batch-sizes", "1", "--min-run-time",
                       "0.01")  # fmt: skip
    assert code == 0, err
    (folder / "recipe.json").write_text(json.dumps(RECIPE))
    (folder / "broken.json").write_text("{not json")
    return folder


def test_report_draws_every_kind(tmp_path, lenet5, fake_mnist, capsys) -> None:
    folder = _run_dir(tmp_path, lenet5, fake_mnist, capsys)
    kinds = {p.name: kind_of(json.loads(p.read_text())) for p in folder.glob("*.json")
             if p.name != "broken.json"}  # fmt: skip
    assert kinds == {"sens.json": "sensitivity", "search.json": "search", "recipe.json": "recipe"}
    code, _, err = run(capsys, "report", str(folder), "--title", "LeNet-5 run")
    assert code == 0, err
    page = (folder / "report.html").read_text()
    parsed = _Collect()
    parsed.feed(page)
    parsed.close()
    assert parsed.open == []  # every element closed, in order
    # sensitivity curves, search scatter and ratio bars, recipe bars: all embedded PNGs
    assert len(parsed.images) >= 4
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in parsed.images)
    text = " ".join(parsed.text)
    for fragment in ("LeNet-5 run", "sens.json", "search.json", "recipe.json", "Pareto",
                     "conv1", "not readable JSON", "deep-compression"):  # fmt: skip
        assert fragment in page or fragment in text, fragment
    assert "http://" not in page and "https://" not in page  # nothing fetched


def test_report_bad_folder(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "report", str(tmp_path / "nope"))
    assert_one_line_error(code, err, "not a folder")
    code, _, err = run(capsys, "report", str(tmp_path))
    assert_one_line_error(code, err, "no .json result files")


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_browser() is None, reason="no headless browser (chromium/chrome) here")
def test_report_renders_in_a_headless_browser(tmp_path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "recipe.json").write_text(json.dumps(RECIPE))
    page = folder / "report.html"
    page.write_text(render_html([folder / "recipe.json"], "browser check"))
    shot = tmp_path / "shot.png"
    dom = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "browser check" in dom.stdout and "<table>" in dom.stdout
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000
