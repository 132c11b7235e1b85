"""The default model: the pipeline folder shipped as package data at ``tora2/data/embedded/``.

Until trained weights are shipped there, the default is a tiny *untrained* pipeline built from
``configs/model/tiny.yaml`` with a fixed seed, saved once under the model cache
(``$TORA2_MODEL_CACHE`` or ``~/.cache/tora2/models``) and loaded from there afterwards; loading it
logs one warning saying so.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tora2.configuration import CONFIG_DIR
from tora2.errors import InputError

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "data" / "embedded"
UNTRAINED_CONFIG = CONFIG_DIR / "model" / "tiny.yaml"
UNTRAINED_SEED = 0
EMBEDDED_ID = "tora2-embedded"
logger = logging.getLogger("tora2")
_warned = False


def model_cache_root() -> Path:
    return Path(os.environ.get("TORA2_MODEL_CACHE", "~/.cache/tora2/models")).expanduser()


def has_trained_embedded() -> bool:
    return (EMBEDDED_DIR / "model_index.json").is_file()


def untrained_dir() -> Path:
    """Cache folder of the untrained default; its name hashes the config, seed and versions."""
    import diffusers
    import torch
    import transformers

    from tora2.pipelines.components import DEFAULT_VOCAB

    digest = hashlib.sha256()
    for part in (UNTRAINED_CONFIG.read_bytes(), DEFAULT_VOCAB.read_bytes(), str(UNTRAINED_SEED).encode(),
                 diffusers.__version__.encode(), transformers.__version__.encode(), torch.__version__.encode()):
        digest.update(part)
    return model_cache_root() / f"untrained-tiny-{digest.hexdigest()[:12]}"


def build_untrained(directory: Path) -> Path:
    """Build the tiny untrained pipeline and save it to ``directory`` atomically."""
    from tora2.pipelines.components import build_tiny_components
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    pipe = Tora2Pipeline(**build_tiny_components(UNTRAINED_CONFIG, seed=UNTRAINED_SEED))
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        pipe.save_pretrained(tmp)
        try:
            os.replace(tmp, directory)
        except OSError:  # another process won the race: its copy is identical
            if not (directory / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def resolve_model(model: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(pipeline folder, model id) for ``--model``: a folder given, else the embedded default."""
    global _warned
    if model is not None:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise InputError(f"model directory {path} does not exist; pass a Tora2 pipeline folder (see tora2 convert-tora)")
        if not (path / "model_index.json").is_file():
            raise InputError(f"{path} has no model_index.json: not a diffusers pipeline folder; convert Tora weights with tora2 convert-tora")
        return path, str(path)
    if has_trained_embedded():
        return EMBEDDED_DIR, EMBEDDED_ID
    directory = untrained_dir()
    if not (directory / "model_index.json").is_file():
        build_untrained(directory)
    if not _warned:
        logger.warning("the default model is untrained (tiny random weights): videos are noise; pass --model DIR for a real model")
        _warned = True
    return directory, f"{EMBEDDED_ID}-untrained"


def load_pipeline(model: str | os.PathLike | None = None, torch_dtype=None):
    """Tora2Pipeline.from_pretrained of ``resolve_model(model)``; returns (pipeline, model id)."""
    # The component classes must be imported before from_pretrained can name them.
    import tora2.models.encoders  # noqa: F401
    import tora2.models.personalization  # noqa: F401
    import tora2.models.transformer_tora2  # noqa: F401
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    path, model_id = resolve_model(model)
    kwargs = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    try:
        pipe = Tora2Pipeline.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot load the pipeline in {path}: {first}; check that the folder is a complete Tora2 pipeline") from None
    return pipe, model_id
