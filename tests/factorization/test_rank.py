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


def test_rounded_ranks_are_multiples_and_still_meet_a_flops_target():
    import torch
    from torch import nn

    import squeezer as sq
    from squeezer.analysis.counting import count_flops
    from squeezer.factorization import Tucker

    torch.manual_seed(0)
    x = torch.randn(1, 40, 12, 12)
    flops = {}
    ranks = {}
    for n in (1, 8):
        model = nn.Sequential(nn.Conv2d(40, 100, 3, padding=1))
        before = count_flops(model, (x,))[0]
        report = sq.factorize_(model, Tucker(rank="flops:3", round_to=n), x)
        flops[n] = before / count_flops(model, (x,))[0]
        ranks[n] = report.converted[0].ranks
    assert all(r % 8 == 0 for r in ranks[8]), ranks
    assert ranks[1] != ranks[8]  # the unrounded search lands on odd widths here
    assert flops[8] >= 3.0 and flops[1] >= 3.0


def test_rounding_rounds_per_mode_ranks_up_and_never_past_the_full_rank():
    import torch
    from torch import nn

    import squeezer as sq
    from squeezer.errors import ConfigError
    from squeezer.factorization import SVD, Tucker

    model = nn.Sequential(nn.Linear(50, 20))
    report = sq.factorize_(model, SVD(rank=5, round_to=8, force=True), torch.randn(1, 50))
    assert report.converted[0].ranks == [8]
    conv = nn.Sequential(nn.Conv2d(6, 100, 3))
    report = sq.factorize_(conv, Tucker(rank=0.5, round_to=16, force=True), torch.randn(1, 6, 8, 8))
    assert report.converted[0].ranks == [64, 6]  # 50 -> 64; 3 -> 16, capped at the full 6
    with pytest.raises(ConfigError, match="round_to"):
        Tucker(round_to=0)
