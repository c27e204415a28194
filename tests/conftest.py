"""Shared fixtures: the real datasets in ../shared/data, small fake datasets, a clean HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import make_idx_folder

REPO = Path(__file__).resolve().parents[1]
# Read once at start-up: the autouse fixture below hides the variable from every test.
_ENV_DATA = os.environ.get("SQUEEZER_DATA")


def shared_data_dir() -> Path | None:
    """The real MNIST/Fashion-MNIST: $SQUEEZER_DATA, else ../shared/data beside the repo."""
    for candidate in (_ENV_DATA, REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist").is_dir():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = shared_data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must see the real datasets: set SQUEEZER_DATA=../shared/data")
        pytest.skip("real MNIST not found (set SQUEEZER_DATA to the folder holding mnist/)")
    return path


@pytest.fixture(scope="session")
def extension_cache(request: pytest.FixtureRequest) -> Path:
    """Where compiled C++ kernels persist between runs: pytest's own cache folder in the repo,
    not the user's ~/.cache (so a run pays the minute-long XNOR kernel build once, not every
    time the isolated HOME below is created afresh)."""
    return Path(request.config.cache.mkdir("torch_extensions"))


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    extension_cache: Path,
) -> Path:
    """No test reads or writes the user's ~/.cache, or finds data it did not ask for."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(extension_cache))
    monkeypatch.delenv("SQUEEZER_DATA", raising=False)
    monkeypatch.setattr("squeezer.data.files.SYSTEM_DIR", home / "no-system-datasets")
    return home


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    """A folder holding a small fake dataset in MNIST's four IDX files."""
    folder = tmp_path / "fake" / "mnist"
    make_idx_folder(folder)
    return folder
