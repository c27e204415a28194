"""Optimal Brain Damage and layer-wise Optimal Brain Surgeon: the Hessian diagonal against a
brute-force Gauss-Newton matrix, each OBS removal against the least-squares optimum, the
layer's reported error against its real outputs, the recipe stage, and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError, ModelError
from squeezer.pruning import OBD, OBS, Magnitude, hessian_diagonal, obs_order


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 4))


def _data(n: int = 48, features: int = 12, classes: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return [(x[: n // 2], y[: n // 2]), (x[n // 2 :], y[n // 2 :])]


# ------------------------------------------------------------------------------------ OBD
def test_the_ggn_diagonal_equals_the_brute_force_gauss_newton_matrix():
    model = _mlp()
    data = _data()
    layers = [("0", model[0]), ("2", model[2])]
    got = hessian_diagonal(model, layers, data, samples=48, kind="ggn", chunk=5)
    # brute force: J^T (diag p - p p^T) J per example, J the full Jacobian of the logits
    weights = (model[0].weight, model[2].weight)
    total = [torch.zeros_like(w) for w in weights]
    for x, _ in data:
        for xi in x:

            def f(w0, w2, xi=xi):
                h = torch.tanh(xi @ w0.T + model[0].bias)
                return h @ w2.T + model[2].bias

            j0, j2 = torch.autograd.functional.jacobian(f, weights)
            p = torch.softmax(f(*weights), 0).detach()
            hout = torch.diag(p) - torch.outer(p, p)
            for t, j in zip(total, (j0, j2), strict=True):
                flat = j.reshape(len(p), -1)
                t += torch.einsum("ka,kl,la->a", flat, hout, flat).view_as(t)
    torch.testing.assert_close(got["0"], total[0] / 48, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(got["2"], total[1] / 48, rtol=1e-4, atol=1e-7)


def test_the_empirical_fisher_is_the_mean_squared_per_example_gradient():
    model = _mlp()
    data = _data()
    got = hessian_diagonal(model, [("2", model[2])], data, samples=30, kind="fisher")
    expect = torch.zeros_like(model[2].weight)
    xs, ys = torch.cat([x for x, _ in data])[:30], torch.cat([y for _, y in data])[:30]
    for xi, yi in zip(xs, ys, strict=True):
        model.zero_grad()
        nn.functional.cross_entropy(model(xi[None]), yi[None]).backward()
        expect += model[2].weight.grad.square()
    torch.testing.assert_close(got["2"], expect / 30, rtol=1e-4, atol=1e-8)


def test_obd_removes_the_least_salient_weights_and_masks_them():
    model = _mlp()
    data = _data()
    h = hessian_diagonal(model, [("0", model[0])], data, samples=48)["0"]
    saliency = 0.5 * h * model[0].weight.detach().square()
    report = sq.prune_(model, OBD(sparsity=0.5, layers=("0",)), data=data)
    assert report["0"] == pytest.approx(0.5)
    kept = model[0].weight != 0
    assert saliency[~kept].max() <= saliency[kept].min()  # the cheapest half went
    assert report.totals["saliency"] == pytest.approx(float(saliency[~kept].sum()), rel=1e-5)
    assert isinstance(model[0].parametrizations.weight[0], sq.pruning.WeightMask)


def test_obd_global_scope_reaches_the_total_with_uneven_layers():
    model = _mlp()
    report = sq.prune_(model, OBD(sparsity=0.6, scope="global"), data=_data())
    total = model[0].weight.numel() + model[2].weight.numel()
    zeros = int((model[0].weight == 0).sum() + (model[2].weight == 0).sum())
    assert zeros == round(0.6 * total) and report["0"] != report["2"]


def test_obd_reads_a_conv_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3))
    x, y = torch.randn(10, 2, 6, 6), torch.randint(0, 3, (10,))
    report = sq.prune_(model, OBD(sparsity=0.5), data=[(x, y)])
    assert report["0"] == pytest.approx(0.5, abs=0.02) and report["3"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------ OBS
def _spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(3 * d, d, generator=g, dtype=torch.float64)
    a[:, 1] = a[:, 0] + 0.1 * a[:, 1]  # correlated inputs: where OBS and magnitude differ
    return a.T @ a / (3 * d) + 0.01 * torch.eye(d, dtype=torch.float64)


def _best_removal(w: torch.Tensor, h: torch.Tensor, gone: list[int]) -> tuple[int, float]:
    """Brute force: for every weight still there, the least 1/2 dw^T H dw with it and the
    ``gone`` ones at zero, the others free."""
    best = (-1, float("inf"))
    for q in range(len(w)):
        if q in gone:
            continue
        zero = [*gone, q]
        free = [i for i in range(len(w)) if i not in zero]
        dw = torch.zeros_like(w)
        dw[zero] = -w[zero]
        if free:  # minimize over the free part: H_FF dw_F = -H_FZ dw_Z
            dw[free] = torch.linalg.solve(h[free][:, free], -h[free][:, zero] @ dw[zero])
        cost = float(0.5 * dw @ h @ dw)
        if cost < best[1]:
            best = (q, cost)
    return best


def test_each_obs_removal_is_the_least_squares_optimum_even_across_compactions():
    d = 20
    h = _spd(d, 0)
    w = torch.randn(2, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    hinv = torch.linalg.inv(h).unsqueeze(0)
    order, loss = obs_order(w, hinv, torch.zeros(2, dtype=torch.long), steps=14)
    for row in range(2):
        gone: list[int] = []
        cumulative = 0.0
        for step in range(14):  # compactions happen after 3, 6, 9... removals at d=20
            q, cost = _best_removal(w[row], h, gone)
            assert int(order[row, step]) == q, (row, step)
            cumulative += float(loss[row, step])
            assert cumulative == pytest.approx(cost, rel=1e-6)
            gone.append(q)


def test_obs_beats_magnitude_on_the_layer_output_and_reports_that_error():
    torch.manual_seed(0)
    layer = nn.Linear(24, 10)
    base = torch.randn(256, 6)
    x = torch.cat([base, base @ torch.randn(6, 18) + 0.05 * torch.randn(256, 18)], 1)
    batches = [(x[:128], None), (x[128:], None)]
    magnitude, surgeon = copy.deepcopy(layer), copy.deepcopy(layer)
    sq.prune_(magnitude, Magnitude(sparsity=0.75))
    report = sq.prune_(surgeon, OBS(sparsity=0.75, damping=1e-6), data=batches)
    assert report[""]["sparsity"] == pytest.approx(0.75)
    assert int((surgeon.weight == 0).sum()) == 180

    def error(m: nn.Linear) -> float:
        with torch.no_grad():
            return float((x @ (m.weight - layer.weight).T).norm() / (x @ layer.weight.T).norm())

    assert error(surgeon) < 0.5 * error(magnitude)
    assert report[""]["error"] == pytest.approx(error(surgeon), rel=1e-3)


def test_obs_does_not_depend_on_the_scale_of_the_inputs():
    """Scaled inputs give the same mask and weights (H is normalized), even at scales whose
    products would be subnormal numbers (which once made LAPACK take minutes)."""
    torch.manual_seed(0)
    layer = nn.Linear(30, 6)
    x = torch.randn(64, 30, dtype=torch.float64)
    a, b = copy.deepcopy(layer).double(), copy.deepcopy(layer).double()
    sq.prune_(a, OBS(sparsity=0.6), data=[(x, None)])
    sq.prune_(b, OBS(sparsity=0.6), data=[(x * 1e-160, None)])
    assert torch.equal(a.weight == 0, b.weight == 0)
    torch.testing.assert_close(a.weight, b.weight)


def test_obs_on_a_grouped_padded_conv_measures_its_error_on_the_real_outputs():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2, groups=2, bias=False)
    x = torch.randn(8, 4, 9, 9)
    before = copy.deepcopy(conv)
    report = sq.prune_(conv, OBS(sparsity=0.5, damping=1e-6), data=[(x, None)])
    with torch.no_grad():
        ref = before(x)
        real = float((conv(x) - ref).norm() / ref.norm())
    assert report[""]["error"] == pytest.approx(real, rel=1e-3)
    assert report[""]["sparsity"] == pytest.approx(0.5)


def test_obs_prunes_layers_in_order_and_masks_hold_through_training():
    model = _mlp()
    data = _data()
    sq.prune_(model, OBS(sparsity=0.8), data=data)
    zeros = [model[0].weight == 0, model[2].weight == 0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in data * 3:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert bool((model[0].weight[zeros[0]] == 0).all() and (model[2].weight[zeros[1]] == 0).all())


def test_obs_visits_layers_in_the_order_forward_calls_them():
    from squeezer.pruning.second_order import _forward_order

    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.Linear(5, 2)  # registered first, called second
            self.early = nn.Linear(3, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.late(torch.relu(self.early(x)))

    model = Backwards()
    layers = [("late", model.late), ("early", model.early)]
    assert [n for n, _ in _forward_order(model, layers, torch.randn(1, 3))] == ["early", "late"]
    report = sq.prune_(model, OBS(sparsity=0.5), data=[(torch.randn(32, 3), None)])
    assert list(report) == ["early", "late"]


def test_obs_and_obd_are_recipe_stages_reading_training_batches():
    from squeezer.pipeline import Recipe, run_recipe

    train, test = sq.data.load("digits")
    torch.manual_seed(0)
    model = sq.models.create("lenet300")
    sq.fit(model, train, epochs=2, lr=0.1, batch_size=64)
    stages = [
        {"obs": {"sparsity": 0.5, "layers": ["fc2", "fc3"], "batches": 2}},
        {"obd": {"per_layer": {"fc1": 0.3}, "samples": 64, "batches": 1}},
    ]
    recipe = Recipe.from_dict({"name": "second-order", "stages": stages})
    assert [type(s.config).__name__ for s in recipe.stages] == ["OBS", "OBD"]
    result = run_recipe(model, train, test, recipe)
    assert [r["stage"] for r in result.reports] == ["obs", "obd"]
    assert float((model.fc2.weight == 0).float().mean()) == pytest.approx(0.5)
    assert float((model.fc1.weight == 0).float().mean()) == pytest.approx(0.3, abs=1e-4)
    assert result.top1_after > 0.5


# ------------------------------------------------------------------------------ bad input
def test_bad_input_is_refused_by_name_before_anything_changes():
    model = _mlp()
    with pytest.raises(ModelError, match="reads data"):
        sq.prune_(model, OBS(sparsity=0.5))
    with pytest.raises(ModelError, match="rows of 12 weights, above max_inputs=8"):
        sq.prune_(model, OBS(sparsity=0.5, max_inputs=8), data=_data())
    assert not hasattr(model[0], "parametrizations")
    with pytest.raises(ModelError, match="Conv1d"):
        sq.prune_(nn.Sequential(nn.Conv1d(2, 2, 3)), OBD(sparsity=0.5, layer_types=("Conv1d",)),
                  data=_data())  # fmt: skip
    with pytest.raises(ConfigError, match=r"sparsity must be in \[0, 1\)"):
        OBD(sparsity=1.0)
    with pytest.raises(ConfigError, match="hessian must be"):
        OBD(sparsity=0.5, hessian="exact")
    with pytest.raises(ConfigError, match="give sparsity or per_layer"):
        OBS()
    with pytest.raises(ModelError, match="targets"):
        sq.prune_(model, OBD(sparsity=0.5, hessian="fisher"), data=[(torch.randn(4, 12),)])
