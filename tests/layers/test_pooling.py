"""S3Pool and detail-preserving pooling: each step against its definition, training and
inference rules, gradients, save and load, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import squeezer as sq
from squeezer.layers import DetailPreservingPool2d, S3Pool


def test_s3pool_samples_rows_and_columns_of_the_stride_one_max_per_tile():
    torch.manual_seed(0)
    pool = S3Pool(kernel_size=2, stride=2, grid=4).train()
    x = torch.randn(2, 3, 8, 12)
    y = pool(x)
    assert y.shape == (2, 3, 4, 6)
    dense = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)
    rows, cols = pool.last_rows, pool.last_cols
    assert rows is not None and cols is not None
    torch.testing.assert_close(y, dense[:, :, rows][:, :, :, cols])
    # two distinct rows in order from each tile of four
    for r in (rows, cols):
        tiles = r.view(-1, 2)
        assert bool((tiles[:, 0] < tiles[:, 1]).all())
        assert bool((tiles // 4 == torch.arange(len(tiles))[:, None]).all())
    # the draws vary between steps; every row of a tile is drawn sometimes
    seen = set()
    for _ in range(50):
        pool(x)
        seen.update(pool.last_rows.tolist())
    assert seen == set(range(8))


def test_s3pool_infers_with_the_average_of_the_stride_one_max_and_has_gradients():
    pool = S3Pool(kernel_size=3, stride=2, grid=2).eval()
    x = torch.randn(1, 2, 7, 9, requires_grad=True)
    y = pool(x)
    dense = F.max_pool2d(F.pad(x, (0, 2, 0, 2), mode="replicate"), 3, 1)
    torch.testing.assert_close(y, F.avg_pool2d(dense, 2, 2, ceil_mode=True))
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_detail_preserving_pooling_between_average_and_the_most_different_input():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 6, 6)
    pool = DetailPreservingPool2d(3, 2)
    with torch.no_grad():
        pool.lam.zero_()  # no reward for detail: average pooling
    torch.testing.assert_close(pool(x), F.avg_pool2d(x, 2))
    with torch.no_grad():
        pool.lam.fill_(1.0)
    y = pool(x).detach()
    # a weighted average: inside each window's range, and above the mean for the asymmetric
    # variant (brighter details weigh more)
    assert bool((y <= F.max_pool2d(x, 2) + 1e-6).all())
    assert bool((y >= F.avg_pool2d(x, 2) - 1e-6).all())
    # the definition, one window by hand
    win = x[0, 1, :2, :2].flatten()
    d = (win - win.mean()).clamp_min(0)
    w = 1.0 + (d**2 + 1e-6).sqrt()
    assert float(y[0, 1, 0, 0]) == pytest.approx(float((w * win).sum() / w.sum()), rel=1e-5)
    with torch.no_grad():
        pool.lam.fill_(60.0)
        pool.alpha.zero_()
    torch.testing.assert_close(pool(x), F.max_pool2d(x, 2), atol=2e-2, rtol=0)
    sym = DetailPreservingPool2d(3, 2, symmetric=True)
    with torch.no_grad():
        sym.lam.fill_(60.0)
        sym.alpha.zero_()
    far = (x.unfold(2, 2, 2).unfold(3, 2, 2) - F.avg_pool2d(x, 2)[..., None, None]).flatten(-2)
    pick = x.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2).gather(
        -1, far.abs().argmax(-1, keepdim=True)
    )[..., 0]  # fmt: skip
    top2 = far.abs().topk(2, -1).values
    clear = top2[..., 0] > 1.2 * top2[..., 1]  # one input clearly the most different
    assert int(clear.sum()) > 20
    torch.testing.assert_close(sym(x)[clear], pick[clear], atol=1e-3, rtol=0)


def test_pooling_layers_train_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), S3Pool(2, 2, grid=4),
        nn.Conv2d(4, 4, 3, padding=1), DetailPreservingPool2d(4, 2, symmetric=True),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    )  # fmt: skip
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 3, (16,))
    sq.fit(model, [(x, y)], epochs=2, lr=0.05, verbose=False)
    assert float(model[4].lam.grad.abs().sum()) > 0  # lambda is learned
    model.eval()
    sq.save_checkpoint(model, tmp_path / "m.pt")
    fresh = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), S3Pool(2, 2, grid=4),
        nn.Conv2d(4, 4, 3, padding=1), DetailPreservingPool2d(4, 2, symmetric=True),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    )  # fmt: skip
    loaded = sq.load_checkpoint(tmp_path / "m.pt", model=fresh).eval()
    torch.testing.assert_close(loaded(x), model(x))
    assert sq.layers.build_module(sq.layers.module_spec(model[2])).grid == 4


def test_bad_input():
    with pytest.raises(ValueError, match="grid=3 must be a multiple of stride=2"):
        S3Pool(2, 2, grid=3)
    with pytest.raises(ValueError, match="does not split into tiles of grid=4"):
        S3Pool(2, 2, grid=4).train()(torch.randn(1, 1, 6, 8))
