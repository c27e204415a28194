"""``prune_``: the pruning verb, dispatching on the config's type."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from squeezer.core import Report, apply


def prune_(
    model: nn.Module,
    config: object,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
) -> Report:
    """Prune ``model`` in place by the method ``config`` names.

    Args:
        model: the network.
        config: a pruning method: :class:`~squeezer.pruning.Magnitude` (weights masked to
            zero, held there while training) or :class:`~squeezer.pruning.ChannelPruning`
            (channels physically removed; the model's layers are replaced by smaller ones).
        example_inputs: inputs for tracing (channel pruning; default: one zero example of the
            model's ``input_shape``).
        data: batches of ``(inputs, targets)`` for the criteria that read data.

    Returns:
        The method's report (``format()``, ``to_dict()``).

    Raises:
        ConfigError: ``config`` is not a pruning method.
    """
    return apply("prune", model, config, example_inputs, data=data)
