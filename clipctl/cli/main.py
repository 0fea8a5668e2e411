"""Console entry point: runs the typer app and turns failures into one line and an exit code."""

from __future__ import annotations

import os
import sys

from clipctl.errors import ClipctlError


def main(argv: list[str] | None = None) -> int:
    from clipctl.cli.app import build_app

    app = build_app()
    try:
        app(args=argv, prog_name="clipctl", standalone_mode=False)
    except ClipctlError as err:
        print(f"clipctl: error: {err}", file=sys.stderr)
        return err.exit_code
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print("clipctl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - last line of defence against tracebacks
        import click

        if isinstance(err, click.exceptions.Abort):
            print("clipctl: aborted", file=sys.stderr)
            return 130
        if isinstance(err, click.ClickException):
            err.show()
            return err.exit_code
        if os.environ.get("CLIPCTL_DEBUG"):
            raise
        print(
            f"clipctl: internal error: {type(err).__name__}: {err} (set CLIPCTL_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


def run() -> None:
    sys.exit(main())
