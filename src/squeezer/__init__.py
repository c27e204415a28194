"""squeezer: make trained PyTorch networks smaller and faster, measured honestly.

Importing squeezer sets no global state, trains nothing, downloads nothing and reads no data.

    import squeezer as sq
    model = sq.models.create("lenet5")
    train, test = sq.data.load("mnist")
    sq.fit(model, train, epochs=10)
    print(sq.evaluate(model, test))
    print(sq.measure(model, sq.data.example_inputs(test)))
"""

from __future__ import annotations

__version__ = "0.1.0"

from squeezer import (
    analysis,
    automation,
    coding,
    compact,
    conversion,
    core,
    data,
    deploy,
    distillation,
    dynamic,
    factorization,
    layers,
    models,
    pipeline,
    pruning,
    quantization,
    surgery,
    train,
)
from squeezer.analysis import measure
from squeezer.coding import load, save
from squeezer.conversion import convert_
from squeezer.deploy import export
from squeezer.distillation import distill
from squeezer.errors import SqueezerError
from squeezer.factorization import factorize_
from squeezer.pruning import prune_, prune_channels
from squeezer.quantization import quantize, quantize_
from squeezer.train import (
    Callback,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "Callback",
    "SqueezerError",
    "TrainConfig",
    "__version__",
    "analysis",
    "automation",
    "coding",
    "compact",
    "conversion",
    "convert_",
    "core",
    "data",
    "deploy",
    "distill",
    "distillation",
    "dynamic",
    "evaluate",
    "export",
    "factorization",
    "factorize_",
    "fit",
    "layers",
    "load",
    "load_checkpoint",
    "measure",
    "models",
    "pipeline",
    "prune_",
    "prune_channels",
    "pruning",
    "quantization",
    "quantize",
    "quantize_",
    "save",
    "save_checkpoint",
    "surgery",
    "train",
]
