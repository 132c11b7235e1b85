"""``tora2 studio``: a browser app to place entities, draw their paths and generate (Gradio, the
optional extra ``tora2[studio]``). The page is built in ``cli/studio/app.py``; the canvas is
``canvas.js`` + ``studio.css``; every check and the generation itself are the library's."""

from __future__ import annotations

import atexit
import shutil
from pathlib import Path
from typing import Optional

import typer

from cli.errors import handle_errors
from tora2.errors import InputError


@handle_errors
def studio(
    model: Optional[Path] = typer.Option(None, "--model", help="Tora2 pipeline folder (default: the embedded model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (default: this machine only)."),
    port: int = typer.Option(7860, "--port", help="Port, 1024–65535."),
    share: bool = typer.Option(False, "--share", help="Also open a public Gradio share link (off: local only)."),
) -> None:
    """Open the studio: upload entity photos, draw their paths on a canvas, preview, generate."""
    from tora2.requests import check_integer

    check_integer(port, "--port", 1024, 65535)
    _check_port_free(host, port)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise InputError("the studio needs Gradio: pip install 'tora2[studio]' (make install does it)") from None
    from cli.studio.app import build

    demo, root = build(None if model is None else str(model))
    atexit.register(shutil.rmtree, root, True)
    typer.echo(f"tora2 studio: http://{host}:{port}/ (Ctrl-C stops it)")
    demo.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, share=share, inbrowser=False, allowed_paths=[str(root)],
        show_error=True, quiet=True, max_file_size="20mb",
    )


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InputError(f"--port {port} on {host} is not free ({error.strerror}); pass another --port") from None
