"""`clipctl serve`: a search page and JSON API (and clip-retrieval's back-end endpoints) over indexes."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli import options
from clipctl.cli.console import err

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        index_dirs: list[Path] = typer.Argument(
            ...,
            help="Index folder(s) from `clipctl index`; each is served under its folder name.",
            show_default=False,
        ),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."
        ),
        port: int = typer.Option(8000, "--port", "-p", help="Port to listen on."),
        max_k: int = typer.Option(1000, "--max-k", help="Most results one query may ask for."),
        max_upload_mb: float = typer.Option(
            10.0, "--max-upload-mb", help="Largest request body (image upload)."
        ),
        device: str = options.device("Where to embed queries: cpu, cuda, cuda:N or mps."),
        allow_origin: list[str] = typer.Option(
            None,
            "--allow-origin",
            help="Let pages from this origin call the API (CORS), e.g. a clip-retrieval front end; repeatable.",
        ),
        nprobe: int = options.nprobe(),
    ) -> None:
        """Serve a search page and JSON API for one or more indexes (localhost only unless --host)."""
        from clipctl.errors import ClipctlError

        if not 0 < port < 65536:
            raise ClipctlError(f"--port must be between 1 and 65535, got {port}")
        if max_upload_mb <= 0:
            raise ClipctlError(f"--max-upload-mb must be positive, got {max_upload_mb}")
        from clipctl.search.deps import SERVE_MODULES, require

        require(SERVE_MODULES, "clipctl serve")
        from clipctl.search.server import run_server
        from clipctl.search.service import SearchService, ServeOptions

        serve_options = ServeOptions(
            max_k=max_k,
            max_upload_bytes=int(max_upload_mb * (1 << 20)),
            allow_origins=tuple(allow_origin or ()),
            device=device,
            nprobe=nprobe,
        )
        service = SearchService(
            index_dirs, serve_options, warn=lambda line: err.print(f"[yellow]note:[/] {line}")
        )
        if host not in LOOPBACK:
            err.print(
                f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can search these "
                "indexes and fetch their images",
                soft_wrap=True,
            )
        shown = f"[{host}]" if ":" in host else host
        for entry in service.describe():
            err.print(
                f"serving {entry['name']} ({entry['count']:,} {entry['modality']} rows, {entry['kind']})"
            )
        err.print(f"open http://{shown}:{port}/ (Ctrl-C to stop)")
        run_server(service, host, port)
