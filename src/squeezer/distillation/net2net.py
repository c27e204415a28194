"""Net2Net (Chen, Goodfellow & Shlens 2016): grow a trained network without changing what it
computes, so a larger student starts from a smaller teacher's function.

- :func:`widen_` (Net2WiderNet): ``layer`` gets ``width`` output units; each new unit copies a
  randomly chosen existing one, and the next layer divides the weights it reads from every
  copy by the number of copies, so the sum it computes is unchanged. A BatchNorm between them
  is widened alike (its statistics copied). ``noise`` adds a little to the copies' outgoing
  weights to break the symmetry (then the function changes by about that much).
- :func:`deepen_` (Net2DeeperNet): an identity-initialized Linear or convolution (and,
  optionally, a BatchNorm set to the identity) inserted after a module, followed by a ReLU
  when the module's output is already non-negative (``ReLU(ReLU(x)) = ReLU(x)``).

Both record the new shapes in the model's architecture record, so the grown model saves to a
``.sqz`` and loads back like any other changed model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from squeezer.core import replace
from squeezer.core.modules import resized
from squeezer.distillation.features import resolve
from squeezer.errors import ConfigError


def _out_size(m: nn.Module) -> int:
    return int(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)


def widen_(
    model: nn.Module,
    layer: str,
    next_layer: str,
    width: int,
    *,
    batchnorm: str | None = None,
    noise: float = 0.0,
    seed: int = 0,
) -> Tensor:
    """Give ``layer`` (Linear or Conv2d) ``width`` outputs in place, function preserved.

    Args:
        model: the network, changed in place.
        layer, next_layer: module paths; ``next_layer`` (Linear or Conv2d) reads ``layer``'s
            outputs, directly or through element-wise operations and pooling; a Linear after
            a flatten of ``layer``'s feature maps is handled (each channel's positions move
            together).
        width: the new number of outputs (>= the current).
        batchnorm: path of a BatchNorm on ``layer``'s outputs, widened alike.
        noise: relative standard deviation of noise added to the copies' outgoing weights.
        seed: which units are copied.

    Returns:
        The mapping: new unit ``j`` copies old unit ``mapping[j]``.

    Raises:
        ConfigError: unknown paths, other layer types, a smaller width, or a ``next_layer``
            whose input size is not a multiple of ``layer``'s outputs (only the sizes are
            checked: that ``next_layer`` really reads ``layer`` is the caller's to know;
            compare the outputs before and after when in doubt).
    """
    first, second = resolve(model, layer), resolve(model, next_layer)
    for name, m in ((layer, first), (next_layer, second)):
        if not isinstance(m, (nn.Linear, nn.Conv2d)) or (
            isinstance(m, nn.Conv2d) and m.groups != 1
        ):
            raise ConfigError(f"widen_: {name!r} is a {type(m).__name__}; Linear or Conv2d only")
    old = _out_size(first)
    if width < old:
        raise ConfigError(f"widen_: {layer!r} has {old} outputs; width {width} is not wider")
    n_in = second.in_channels if isinstance(second, nn.Conv2d) else second.in_features
    if n_in % old:
        raise ConfigError(
            f"widen_: {next_layer!r} reads {n_in} inputs, not a multiple of {layer!r}'s {old}"
        )
    per_unit = n_in // old  # positions per channel when a Linear reads flattened maps
    g = torch.Generator().manual_seed(seed)
    mapping = torch.cat([torch.arange(old), torch.randint(0, old, (width - old,), generator=g)])
    counts = torch.bincount(mapping, minlength=old).float()
    new_first = resized(first, keep_out=mapping)
    if per_unit == 1:
        index = mapping
    else:
        offsets = torch.arange(per_unit)
        index = (mapping[:, None] * per_unit + offsets).flatten()
    new_second = resized(second, keep_in=index)
    with torch.no_grad():
        w = new_second.weight
        share = (1.0 / counts[mapping]).repeat_interleave(per_unit)
        shape = [1, -1] + [1] * (w.dim() - 2)
        w.mul_(share.view(shape))
        if noise > 0:
            copies = (torch.arange(width) >= old).repeat_interleave(per_unit)
            jitter = torch.randn(w.shape, generator=g) * noise * w.abs().mean()
            w.add_(jitter * copies.view(shape).to(w.dtype))
    replace(model, layer, new_first)
    replace(model, next_layer, new_second)
    if batchnorm is not None:
        bn = resolve(model, batchnorm)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.num_features != old:
            raise ConfigError(f"widen_: {batchnorm!r} is not a BatchNorm over {old} channels")
        replace(model, batchnorm, resized(bn, keep_features=mapping))
    return mapping


def deepen_(
    model: nn.Module,
    after: str,
    *,
    relu: bool = True,
    batchnorm: bool = False,
    kernel_size: int = 3,
) -> nn.Module:
    """Insert an identity-initialized layer after module ``after`` (Linear or Conv2d, or
    anything whose output a Linear/Conv2d of the same width can take), in place.

    The new block is ``Sequential(original, new layer[, BatchNorm][, ReLU])``. With ``relu``
    (default) the function is preserved only if the original's output is non-negative (it is
    followed by a ReLU, or is one); pass ``relu=False`` otherwise.

    Args:
        after: path of a Linear or Conv2d (its output width sets the new layer's), or of a
            ReLU directly after one.
        relu: end the block with a ReLU.
        batchnorm: put a BatchNorm set to the identity (zero mean, unit variance minus eps,
            unit scale, zero shift) after the new layer.
        kernel_size: the new convolution's (odd) kernel size, padded to keep the size.

    Returns:
        The new layer.
    """
    module = resolve(model, after)
    source = module
    if isinstance(module, nn.ReLU):
        parent, _, name = after.rpartition(".")
        siblings = (
            list(resolve(model, parent).named_children())
            if parent
            else list(model.named_children())
        )
        names = [n for n, _ in siblings]
        i = names.index(name)
        source = next(
            (m for _, m in reversed(siblings[:i]) if isinstance(m, (nn.Linear, nn.Conv2d))),
            None,
        )
        if source is None:
            raise ConfigError(f"deepen_: no Linear or Conv2d before the ReLU {after!r}")
    if isinstance(source, nn.Linear):
        n = source.out_features
        new: nn.Module = nn.Linear(n, n)
        with torch.no_grad():
            new.weight.copy_(torch.eye(n))
            new.bias.zero_()
        norm: nn.Module = nn.BatchNorm1d(n)
    elif isinstance(source, nn.Conv2d):
        if kernel_size % 2 != 1:
            raise ConfigError("deepen_: kernel_size must be odd")
        n = source.out_channels
        new = nn.Conv2d(n, n, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            new.weight.zero_()
            c = kernel_size // 2
            new.weight[torch.arange(n), torch.arange(n), c, c] = 1.0
            new.bias.zero_()
        norm = nn.BatchNorm2d(n)
    else:
        raise ConfigError(f"deepen_: {after!r} is a {type(module).__name__}; give a Linear, "
                          "Conv2d or the ReLU after one")  # fmt: skip
    parts = [module, new]
    if batchnorm:
        with torch.no_grad():
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
            norm.weight.fill_(1.0)
            norm.bias.zero_()
        parts.append(norm)
    if relu:
        parts.append(nn.ReLU())
    ref = next((p for p in module.parameters()), None)
    block = nn.Sequential(*parts)
    if ref is not None:
        block.to(ref.device, ref.dtype)
    replace(model, after, block)
    return new
