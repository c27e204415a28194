"""Importing squeezer has no side effects: no files, no threads setting, no data read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import torch; before = (torch.get_num_threads(), torch.initial_seed());"
        "import squeezer as sq;"
        "after = (torch.get_num_threads(), torch.initial_seed());"
        "assert before == after, (before, after);"
        "assert sq.__version__;"
        "print(sorted(sq.models.list_models()))"
    )
    env = {**os.environ, "HOME": str(tmp_path), "SQUEEZER_DATA": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "lenet5" in done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written to HOME or the working folder


def test_version_is_single_sourced() -> None:
    from importlib.metadata import version

    import squeezer

    assert version("squeezer") == squeezer.__version__
