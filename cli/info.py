"""``tora2 info``: parameter counts per part of a model config, built on the meta device."""

from __future__ import annotations

import json

import typer

from cli.errors import handle_errors


@handle_errors
def info(
    config: str = typer.Option("tiny", "--config", help="A model config: a name in configs/model/ or a YAML path."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print parameter counts per part (CogVideoX backbone / Tora trajectory parts / Tora2 additions)."""
    from tora2.models.configs import count_parameters, load_model_config

    model_config = load_model_config(config)
    counts = count_parameters(model_config)
    if as_json:
        typer.echo(json.dumps({"config": config, "parameters": counts}, indent=2))
        return
    typer.echo(f"config: {config}")
    width = max(len(name) for name in counts)
    for name, value in counts.items():
        typer.echo(f"  {name:<{width}}  {value:>15,}  ({value / 1e6:,.1f}M)")
