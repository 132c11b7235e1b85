"""``tora2 entity ...``: prepare entity crops from photos and show them."""

import typer

app = typer.Typer(help="Entities: segment and crop reference photos, contact sheets.", no_args_is_help=True)
