"""tora2: multi-entity, trajectory-controlled, appearance-personalised video generation.

Importing the package first applies the torchvision import workaround (see _torchvision_shim),
so that diffusers, transformers, open_clip and segment_anything import on CPU-only machines.
"""

from tora2 import _torchvision_shim  # noqa: F401  (must run before anything imports torchvision)
from tora2.errors import InputError, Tora2Error

__version__ = "0.1.0"

__all__ = ["InputError", "Tora2Error", "__version__"]
