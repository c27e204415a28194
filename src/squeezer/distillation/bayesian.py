"""Bayesian dark knowledge (Korattikara, Rathod, Murphy & Welling 2015): a student learns the
posterior predictive of a network, approximated by an ensemble of parameter samples drawn with
stochastic-gradient Langevin dynamics (Welling & Teh 2011).

    ensemble = sgld_ensemble(model, train, samples=8, burn_in=200, thin=50, lr=1e-5)
    sq.distill(student, ensemble, train, KD(temperature=1.0, alpha=1.0), epochs=5)

The paper trains the student online while the sampler runs; here the thinned samples are kept
(``samples`` copies of the model) and averaged as a :class:`~squeezer.distillation.Teachers`
ensemble, which ``sq.distill`` then runs on every batch.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from squeezer.distillation.run import Teachers
from squeezer.errors import ConfigError


class SGLD(torch.optim.Optimizer):
    """Langevin dynamics on ``U(theta) = N * mean loss + prior_precision / 2 * |theta|^2``:
    ``theta <- theta - lr / 2 * grad U + sqrt(lr) * temperature * noise``, the gradient of the
    mean batch loss scaled by ``num_examples`` (an unbiased estimate of the full data's).

    ``temperature=0`` is plain gradient descent on ``U`` (for tests and warm starts).
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        num_examples: int,
        prior_precision: float = 1.0,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if lr <= 0 or num_examples < 1 or prior_precision < 0 or temperature < 0:
            raise ConfigError(
                "SGLD: lr > 0, num_examples >= 1, prior_precision >= 0 and temperature >= 0"
            )
        super().__init__(params, {"lr": lr, "prior_precision": prior_precision})
        self.num_examples, self.temperature = num_examples, temperature
        self.generator = generator

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, prec = group["lr"], group["prior_precision"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad_u = self.num_examples * p.grad + prec * p
                p.add_(grad_u, alpha=-lr / 2)
                if self.temperature > 0:
                    noise = torch.randn(p.shape, generator=self.generator, dtype=p.dtype)
                    p.add_(noise.to(p.device), alpha=math.sqrt(lr) * self.temperature)


def sgld_ensemble(
    model: nn.Module,
    train: Any,
    *,
    samples: int = 8,
    burn_in: int = 200,
    thin: int = 50,
    lr: float = 1e-5,
    prior_precision: float = 1.0,
    batch_size: int = 100,
    seed: int = 0,
) -> Teachers:
    """Posterior samples of ``model``'s parameters by SGLD, started from its current ones.

    Args:
        model: the network (not changed: the chain runs on a copy).
        train: an ImageDataset or an iterable of ``(inputs, targets)`` batches.
        samples: how many parameter samples to keep.
        burn_in: steps before the first kept sample.
        thin: steps between kept samples.
        lr: the step size (the posterior's scale: about ``1 / N`` of an SGD rate).
        prior_precision: the Gaussian prior's precision.

    Returns:
        The samples as one ensemble (their logits averaged).
    """
    from squeezer.data import ImageDataset, loader

    if samples < 1 or burn_in < 0 or thin < 1:
        raise ConfigError("sgld_ensemble: samples >= 1, burn_in >= 0 and thin >= 1")
    chain = copy.deepcopy(model).train()
    if isinstance(train, ImageDataset):
        n = len(train)

        def batches() -> Any:
            epoch = 0
            while True:
                yield from loader(train, batch_size, shuffle=True, seed=seed + epoch)
                epoch += 1
    else:
        data = list(train)
        n = sum(int(b[0].shape[0]) for b in data)

        def batches() -> Any:
            while True:
                yield from data

    dev = next((p.device for p in chain.parameters()), torch.device("cpu"))
    opt = SGLD(chain.parameters(), lr, n, prior_precision,
               generator=torch.Generator().manual_seed(seed))  # fmt: skip
    kept: list[nn.Module] = []
    stream = batches()
    total = burn_in + thin * samples
    for step in range(1, total + 1):
        x, y = next(stream)
        loss = F.cross_entropy(chain(x.to(dev)), y.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"sgld_ensemble: the chain diverged at step {step}; lower lr")
        if step > burn_in and (step - burn_in) % thin == 0:
            kept.append(copy.deepcopy(chain).eval())
    return Teachers(kept)
