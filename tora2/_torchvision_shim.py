"""Make ``import torchvision`` work where only a CUDA build of torchvision exists.

On CPU-only machines the torchvision wheel that pip resolves for ``torch==2.13.0`` is a CUDA
build whose C++ extension fails to load. torchvision then registers fake kernels for
``torchvision::nms`` / ``torchvision::qnms`` whose schemas were never defined, and the import
(and with it transformers, diffusers, open_clip, segment_anything and peft) fails with
``operator torchvision::nms does not exist``.

Defining the two schemas before the first torchvision import lets the import succeed. The C++
kernels are still missing, so calling ``torchvision.ops.nms`` or ``roi_align`` raises; tora2
never calls them (SAM is used through ``SamPredictor``, which does not need them).

``import tora2`` only installs a finder that applies the fix when something first looks torchvision
up, so that commands which never touch a model (``tora2 --help``, ``tora2 track validate``) do not
pay for importing torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the torch.library.Library alive for the life of the process


def _torchvision_ops_load() -> bool:
    """True when torchvision's compiled extension loads (a matching CPU or CUDA build)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: nothing to fix
    import glob
    import os

    import torch

    for location in spec.submodule_search_locations:
        for path in glob.glob(os.path.join(location, "_C*.so")):
            try:
                torch.ops.load_library(path)
                return True
            except (OSError, RuntimeError):
                return False
    return False


def apply() -> None:
    """Register the missing op schemas once, before torchvision is imported."""
    global _library
    if _library is not None or "torchvision" in sys.modules:
        return
    if _torchvision_ops_load():
        return
    import torch

    _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR
    for schema in _SCHEMAS:
        _library.define(schema)


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs :func:`apply` the first time ``torchvision`` is looked up, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            apply()
        return None  # the normal finders import it


def install() -> None:
    if "torchvision" in sys.modules or any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _BeforeTorchvision())


install()
