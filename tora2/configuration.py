"""Run settings: dataclasses loaded from YAML with unknown keys rejected.

Architecture lives in each model's ``config.json`` (``@register_to_config``); run settings are
dataclasses owned by the module that uses them; this module only loads and dumps them.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tora2.errors import InputError

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a one-line InputError for a missing file or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} does not exist: pass a path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"config file {path}{where} is not valid YAML: fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclasses recurse; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{source}.{name}")
        kwargs[name] = coerce_number(hint, value, f"{source}.{name}")
    return cls(**kwargs)


def coerce_number(hint: Any, value: Any, where: str) -> Any:
    """A float field given ``1e-4`` (YAML 1.1 reads a mantissa without a dot as a string) or an int
    becomes a float; a number field given other text is a one-line error naming the key."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (float, int) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{where} must be a number; got {value!r}") from None
        if hint is int:
            if not number.is_integer():
                raise InputError(f"{where} must be an integer; got {value!r}")
            return int(number)
        return number
    return value


def load_config(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from a YAML file, then apply ``overrides`` (dotted keys allowed)."""
    data = read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return from_dict(cls, data, source=str(path))


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "optim.lr", 1e-4)`` sets ``d["optim"]["lr"]``."""
    *parents, leaf = key.split(".")
    for parent in parents:
        data = data.setdefault(parent, {})
        if not isinstance(data, dict):
            raise InputError(f"override {key}: {parent} is not a section")
    data[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-4"`` → ``("optim.lr", 0.0001)``; the value is parsed as YAML."""
    if "=" not in text:
        raise InputError(f"override {text!r} must look like key=value, e.g. optim.lr=1e-4")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def write_yaml(obj: Any, path: str | Path) -> None:
    """Write a resolved config beside a run's outputs."""
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def check_positive_ints(cfg, names) -> None:
    """Each of ``cfg``'s fields ``names`` must be an int ≥ 1; one line naming the first that is not."""
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer ≥ 1; got {value!r}")


def terminal_progress() -> str:
    """The ``progress=`` override a run starts from: bars only when stderr is a terminal, so logs of
    background runs hold no escape codes. Put it before the user's overrides, so ``--set progress=…`` wins."""
    import sys

    return f"progress={'true' if sys.stderr.isatty() else 'false'}"


def load_run_config(load, path, overrides, forced=()):
    """``load(path, overrides)`` of a training run started from a command line: progress bars follow
    the terminal unless an override says otherwise, ``forced`` overrides come last, and diffusers'
    and transformers' load/save bars follow the run's own."""
    from tora2.progress import set_loading_bars

    cfg = load(path, [terminal_progress(), *overrides, *forced])
    set_loading_bars(cfg.progress)
    return cfg


def run_stage(argv: list[str] | None, module: str, example: str, load, train, summary) -> int:
    """The ``python -m <module> CONFIG [--set key=value ...]`` entry point of a training stage.

    ``load(path, overrides)`` → config (``progress=true`` added), ``train(cfg)`` → result,
    ``summary(cfg, result)`` → the last line printed. Bad input: one ``error:`` line, exit code 2.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=f"python -m {module} CONFIG [--set key=value ...]")
    parser.add_argument("config", help=f"training config YAML ({example})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override (repeatable)")
    args = parser.parse_args(argv)
    try:
        cfg = load_run_config(load, args.config, args.overrides)
        result = train(cfg)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(cfg, result))
    return 0
