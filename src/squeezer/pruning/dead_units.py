"""Folding the units sparse training leaves dead, exactly.

After sparse VD or heavy magnitude pruning many hidden units of a fully connected pair
``producer -> activation -> consumer`` are dead in one of two ways, and both can be removed
without changing the network's function:

- no input weight left: the unit outputs ``act(bias)``, a constant; it is folded into the
  consumer's bias (``b' = b + W[:, j] act(b_j)``) and its bias and consumer column zeroed;
- no output weight left: nothing reads the unit; its bias and input weights are zeroed.

The zeros then cost nothing in the ``.sqz`` file (sparse storage), and the surviving units are
what channel pruning would keep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from squeezer.config import Config, check
from squeezer.core import current_weight, find_parametrization
from squeezer.errors import ModelError


@dataclass(frozen=True)
class FoldDeadUnits(Config):
    """The ``fold-dead`` recipe stage: Linear pairs with a ReLU between them.

    Attributes:
        pairs: ``[producer, consumer]`` layer names.
    """

    pairs: tuple[tuple[str, str], ...] = ()

    def validate(self) -> None:
        check(
            all(isinstance(p, (list, tuple)) and len(p) == 2 for p in self.pairs),
            "fold-dead: pairs must be a list of [producer, consumer] layer names",
        )


def _plain_(module: nn.Module) -> None:
    """Bake every parametrization of ``module`` except a weight mask (shared values keep
    their values; share again afterwards to train them as a codebook)."""
    from torch.nn.utils import parametrize

    from squeezer.core import remove_parametrization_
    from squeezer.pruning.magnitude import WeightMask

    if parametrize.is_parametrized(module, "bias"):
        remove_parametrization_(module, "bias")
    if parametrize.is_parametrized(module, "weight") and any(
        not isinstance(q, WeightMask) for q in module.parametrizations.weight
    ):
        remove_parametrization_(module, "weight")


def _set_weight_(module: nn.Module, value: Tensor) -> None:
    """Write ``value`` as the layer's weight, keeping a mask parametrization consistent."""
    from squeezer.pruning.magnitude import WeightMask, set_mask

    with torch.no_grad():
        mask = find_parametrization(module, WeightMask)
        if mask is not None:
            set_mask(module, mask.mask & (value != 0))
            module.parametrizations.weight.original.copy_(value)
        else:
            module.weight.copy_(value)


def fold_dead_units_(
    model: nn.Module,
    pairs: Sequence[tuple[str, str]],
    activation: Callable[[Tensor], Tensor] = torch.relu,
) -> dict[str, dict[str, int]]:
    """Fold the dead hidden units of each ``(producer, consumer)`` pair of Linear layers,
    in place; ``activation`` is what lies between them (elementwise; ReLU by default).

    Shared or quantized weights of the two layers are baked into plain values first (share
    again afterwards to fine-tune a codebook); pruning masks are kept.

    Returns:
        Per pair: how many units had no input (``constant``) and no output (``unread``).

    Raises:
        ModelError: a name that is no Linear layer, or shapes that do not chain.
    """
    modules = dict(model.named_modules())
    report = {}
    for producer, consumer in pairs:
        p, c = modules.get(producer), modules.get(consumer)
        if not isinstance(p, nn.Linear) or not isinstance(c, nn.Linear):
            raise ModelError(f"fold_dead_units_: {producer!r} and {consumer!r} must be Linear")
        _plain_(p)
        _plain_(c)
        wp, wc = current_weight(p), current_weight(c)
        if wp.shape[0] != wc.shape[1]:
            raise ModelError(
                f"fold_dead_units_: {producer} has {wp.shape[0]} outputs, {consumer} reads "
                f"{wc.shape[1]}"
            )
        constant = (wp == 0).all(1)
        unread = (wc == 0).all(0)
        with torch.no_grad():
            if p.bias is not None and bool(constant.any()):
                value = activation(p.bias.detach()) * constant.to(p.bias.dtype)
                if c.bias is None:
                    raise ModelError(f"fold_dead_units_: {consumer} has no bias to fold into")
                c.bias.add_(wc @ value)
                wc = wc * (~constant).to(wc.dtype)
                _set_weight_(c, wc)
                p.bias.mul_((~constant).to(p.bias.dtype))
            dead = (wc == 0).all(0)
            if bool(dead.any()):
                _set_weight_(p, wp * (~dead).to(wp.dtype)[:, None])
                if p.bias is not None:
                    p.bias.mul_((~dead).to(p.bias.dtype))
        report[f"{producer} -> {consumer}"] = {
            "constant": int(constant.sum()),
            "unread": int(unread.sum()),
            "live": int((~(constant | dead)).sum()),
        }
    return report
