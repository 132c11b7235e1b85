"""Video clip datasets on disk: the manifest format (``manifest``) and the model-free preparation
helpers (``prepare``: find videos, pick windows, captions). Written by ``tora2 data prepare``
(``entities.tracking``), read by training (``tora2.training.dataset``)."""
