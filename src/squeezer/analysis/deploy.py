"""Inference-time transforms applied alike to a baseline and a compressed model before timing.

Folding BatchNorm into the preceding convolution and storing activations channels-last are the
two standard steps of CPU deployment (oneDNN's preferred layout). Neither changes the outputs
beyond rounding; both remove memory-bound work that FLOPs counts do not see, so a speedup
measured after them is closer to what a deployed model would show.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from squeezer.core.modules import set_module


class _Tracer(torch.fx.Tracer):
    """Keeps squeezer's own layers (TT, FFT-based, gathers) whole: nothing in them to fold."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        own = type(m).__module__.startswith("squeezer.layers")
        return own or super().is_leaf_module(m, qualname)


def _fold_batchnorm(model: nn.Module) -> nn.Module:
    """Trace ``model`` and fold every BatchNorm whose sole input is a convolution used once."""
    gm = torch.fx.GraphModule(model, _Tracer().trace(model))
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(
            modules[node.target], nn.modules.batchnorm._BatchNorm
        ):
            continue
        prev = node.args[0]
        if not (
            isinstance(prev, torch.fx.Node)
            and prev.op == "call_module"
            and isinstance(modules[prev.target], nn.Conv1d | nn.Conv2d | nn.Conv3d)
            and len(prev.users) == 1
        ):
            continue
        conv, bn = modules[prev.target], modules[node.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        fused = fuse_conv_bn_eval(conv, bn)
        set_module(gm, prev.target, fused)
        modules[prev.target] = fused
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def inference_copy(
    model: nn.Module, *, fold_bn: bool = True, channels_last: bool = False
) -> nn.Module:
    """Return an eval-mode copy of ``model`` prepared for CPU inference.

    Args:
        model: the model; it is not modified.
        fold_bn: fold each BatchNorm that directly follows a convolution into its weights
            (``torch.fx`` trace). A model that cannot be traced is copied unfolded, with a warning.
        channels_last: convert the copy's 4-D parameters to ``torch.channels_last``; feed it
            channels-last inputs too (see ``time_models(memory_format=...)``).
    """
    out = copy.deepcopy(model).eval()
    if fold_bn:
        try:
            fused = _fold_batchnorm(out)
        except Exception as err:  # torch.fx raises several types for untraceable code
            warnings.warn(
                f"BatchNorm folding skipped: the model could not be traced ({err})", stacklevel=2
            )
        else:
            for attr in ("squeezer_arch", "input_shape"):
                if hasattr(out, attr):
                    setattr(fused, attr, getattr(out, attr))
            out = fused
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out
