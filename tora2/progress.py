"""Progress bars of the libraries tora2 drives (diffusers, transformers): one switch for all of them."""

from __future__ import annotations


def set_loading_bars(progress: bool) -> None:
    """diffusers' and transformers' loading and saving bars follow ``progress`` (off: no bar at all)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for module in (diffusers_logging, transformers_logging):
        (module.enable_progress_bar if progress else module.disable_progress_bar)()
