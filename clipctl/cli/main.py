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
        if type(err).__name__ == "Abort":
            print("clipctl: aborted", file=sys.stderr)
            return 130
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):
            # typer/click usage errors (typer vendors its own click, so match by shape, not by class)
            message = err.format_message()
            if message:
                ctx = getattr(err, "ctx", None)
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                print(f"clipctl: error: {message}{hint}", file=sys.stderr)
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
