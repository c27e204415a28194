"""Intermediate tensors of a model, addressed by module path and captured with forward hooks.

Distillation methods that look inside the networks (FitNets hints, attention transfer,
neuron-selectivity transfer) name the tensors they compare by the path of the module that
produces them, as in ``model.get_submodule``: ``"layer2"``, ``"layer3.2.conv2"``,
``"features.12"``. ``""`` is the model itself (its output).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor, nn

from squeezer.errors import ConfigError


def resolve(model: nn.Module, path: str, role: str = "model") -> nn.Module:
    """``model``'s submodule at ``path``.

    Raises:
        ConfigError: no such module; the message lists the paths that do exist nearby.
    """
    try:
        return model.get_submodule(path)
    except AttributeError:
        parent, _, _ = path.rpartition(".")
        try:
            near = model.get_submodule(parent)
        except AttributeError:
            near = model
            parent = ""
        children = [f"{parent}.{n}" if parent else n for n, _ in near.named_children()]
        shown = ", ".join(children[:12]) + (", ..." if len(children) > 12 else "")
        raise ConfigError(
            f"the {role} has no module {path!r}"
            + (f"; under {parent or 'the top'}: {shown}" if children else "")
        ) from None


class FeatureTap:
    """Records the outputs of some of a model's modules on every forward pass.

        tap = FeatureTap(model, ["layer2", "layer3"])
        model(x)
        tap["layer3"]          # that module's output in the last forward pass
        tap.close()            # the hooks go away

    A module whose output is a tuple or list gives its first tensor.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], role: str = "model") -> None:
        self.outputs: dict[str, Tensor] = {}
        self._handles = []
        for path in dict.fromkeys(paths):  # each path once, in order
            module = resolve(model, path, role)
            self._handles.append(module.register_forward_hook(self._keeper(path)))

    def _keeper(self, path: str) -> Callable[[nn.Module, object, object], None]:
        def keep(module: nn.Module, args: object, output: object) -> None:
            if isinstance(output, (tuple, list)):
                output = next((o for o in output if isinstance(o, Tensor)), None)
            if isinstance(output, Tensor):
                self.outputs[path] = output

        return keep

    def __getitem__(self, path: str) -> Tensor:
        try:
            return self.outputs[path]
        except KeyError:
            raise ConfigError(
                f"module {path!r} produced no tensor in the last forward pass (is it used?)"
            ) from None

    def clear(self) -> None:
        self.outputs.clear()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs.clear()
