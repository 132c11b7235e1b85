import pytest

import tora2  # noqa: F401  (torchvision shim before diffusers)


@pytest.fixture(scope="session")
def tiny_components():
    """The tiny components, built once; tests must not modify them (build their own to mutate)."""
    from tora2.pipelines.components import build_tiny_components

    return build_tiny_components("tiny", seed=0)
