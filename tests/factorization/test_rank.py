import numpy as np
import pytest

from squeezer.errors import ConfigError
from squeezer.factorization import RankSpec, energy_rank, parse_rank, vbmf_rank


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (8, RankSpec("absolute", 8)),
        ("8", RankSpec("absolute", 8)),
        (0.25, RankSpec("fraction", 0.25)),
        ("1.0", RankSpec("fraction", 1.0)),
        ("VBMF", RankSpec("vbmf")),
        ("energy:0.9", RankSpec("energy", 0.9)),
        ("compression:4", RankSpec("compression", 4.0)),
        ("flops:2.5", RankSpec("flops", 2.5)),
    ],
)
def test_rank_specs_parse(spec, expected):
    assert parse_rank(spec) == expected
    assert parse_rank(str(expected)) == expected  # str() is a valid spec again


@pytest.mark.parametrize(
    "bad", [0, -3, 1.5, 0.0, "energy:1.5", "flops:0.5", "speed:2", "many", True, None]
)
def test_bad_rank_specs_are_refused_with_a_clear_error(bad):
    with pytest.raises(ConfigError, match="invalid rank"):
        parse_rank(bad)


@pytest.mark.parametrize(
    ("shape", "rank", "noise"), [((120, 80), 7, 0.1), ((64, 576), 12, 0.3), ((300, 200), 25, 0.5)]
)
def test_vbmf_recovers_the_planted_rank(shape, rank, noise):
    rng = np.random.default_rng(0)
    low = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))
    assert vbmf_rank(low + noise * rng.standard_normal(shape)) == rank
    assert vbmf_rank((low + noise * rng.standard_normal(shape)).T) == rank


def test_vbmf_on_pure_noise_keeps_almost_nothing():
    rng = np.random.default_rng(1)
    assert vbmf_rank(rng.standard_normal((100, 100))) <= 2


def test_energy_rank():
    s = np.array([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert energy_rank(s, 9 / 14) == 1
    assert energy_rank(s, 0.9) == 2
    assert energy_rank(s, 1.0) == 3


def test_vbmf_on_a_single_row_or_column():
    rng = np.random.default_rng(2)
    assert vbmf_rank(rng.standard_normal((1, 50))) == 1
    assert vbmf_rank(rng.standard_normal((50, 1))) == 1
