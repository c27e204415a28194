"""An import-compatible stand-in for the few parts of torchvision that timm imports.

torchvision has no CPU build for torch 2.13 on the machines this project is tested on (the
registry wheel links CUDA libraries), and timm will not import without it. The tests put this
folder on ``sys.path`` only when a real torchvision cannot be imported; it is enough to import
timm and build its models, nothing more. Data transforms and data sets raise if used.
"""

__version__ = "0.0.0+squeezer.stand-in"
STAND_IN = True

from torchvision._missing import module_getattr  # noqa: E402

__getattr__ = module_getattr("")
