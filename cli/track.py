"""``tora2 track ...``: validate, convert, render and preview track files."""

import typer

app = typer.Typer(help="Track files: validate, convert, render flow, preview.", no_args_is_help=True)
