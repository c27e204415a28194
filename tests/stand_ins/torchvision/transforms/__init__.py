from torchvision._missing import module_getattr
from torchvision.transforms.functional import InterpolationMode

__all__ = ["InterpolationMode"]
__getattr__ = module_getattr("transforms")
