"""Placeholders for torchvision names that timm imports but model building never calls."""


def placeholder(name):
    class Missing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                f"torchvision.{name} is not available: this is the test stand-in for torchvision"
            )

    Missing.__name__ = Missing.__qualname__ = name.rsplit(".", 1)[-1]
    return Missing


def module_getattr(prefix):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{prefix}.{name}" if prefix else name)

    return __getattr__
