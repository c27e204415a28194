"""Where dataset files are looked for, and how missing ones are downloaded and verified.

Search order for a dataset called ``name``: an explicit ``data_dir`` (the folder itself, then
``data_dir/name``), ``$SQUEEZER_DATA/name``, ``~/.cache/squeezer/name``, and
``/usr/share/datasets/name`` (where Debian's ``dataset-fashion-mnist`` package installs).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

ENV_VAR = "SQUEEZER_DATA"
SYSTEM_DIR = Path("/usr/share/datasets")


def cache_dir() -> Path:
    """The per-user folder that downloads go to: ``~/.cache/squeezer``."""
    return Path.home() / ".cache" / "squeezer"


def search_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for dataset ``name``, in order, without duplicates."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir).expanduser(), Path(data_dir).expanduser() / name]
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser() / name)
    dirs += [cache_dir() / name, SYSTEM_DIR / name]
    seen: set[Path] = set()
    unique = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


def download_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Where a download of ``name`` is written: ``data_dir`` if given, else the cache."""
    return Path(data_dir).expanduser() if data_dir is not None else cache_dir() / name


def md5_of(path: Path, *, uncompressed: bool = False) -> str:
    """MD5 of a file's bytes, or of its gzip-decompressed content if ``uncompressed``."""
    digest = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if uncompressed and _is_gzip(path) else open
    with opener(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


class DownloadError(Exception):
    """Every mirror failed; the message lists why for each."""


def download(
    urls: Sequence[str],
    dest: Path,
    *,
    md5: str | None = None,
    md5_uncompressed: str | None = None,
    progress: bool | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``dest`` from the first mirror that works and verify its checksum.

    The file is written to ``dest.part`` and renamed only once its checksum matches, so an
    interrupted or corrupted download never leaves a file that looks complete.

    Args:
        urls: mirrors to try in order.
        dest: the final path.
        md5: expected MD5 of the downloaded bytes.
        md5_uncompressed: expected MD5 of the gzip-decompressed content (robust to re-gzipping).
        progress: show a progress bar (default: when standard error is a terminal).
        timeout: seconds to wait for each connection.

    Raises:
        DownloadError: no mirror gave a file with the right checksum.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=f"download {dest.name}",
                    disable=_quiet(progress),
                    leave=False,
                ) as bar:
                    for block in iter(lambda r=response: r.read(1 << 16), b""):
                        out.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            failures.append(f"{url}: {reason}")
            part.unlink(missing_ok=True)
            continue
        got = md5_of(part, uncompressed=md5_uncompressed is not None)
        want = md5_uncompressed or md5
        if want is not None and got != want:
            failures.append(f"{url}: checksum mismatch (md5 {got}, expected {want})")
            part.unlink(missing_ok=True)
            continue
        shutil.move(part, dest)
        return dest
    raise DownloadError("; ".join(failures) or "no mirror given")


def _quiet(progress: bool | None) -> bool:
    if progress is None:
        import sys

        return not sys.stderr.isatty()
    return not progress


def not_found_message(
    title: str, dirs: Sequence[Path], files: Sequence[str], reason: str | None
) -> str:
    """The one message every reader gives when a dataset is neither on disk nor downloadable."""
    looked = ", ".join(str(d) for d in dirs)
    why = f" Download failed: {reason}." if reason else " Download was not attempted."
    return (
        f"{title} not found. Looked in: {looked} for the files {', '.join(files)}.{why} "
        f"Put the files in one of those folders, or set {ENV_VAR} to a folder that holds "
        f"'{dirs[-1].name}/'."
    )
