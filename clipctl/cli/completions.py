"""`clipctl completions bash|zsh|fish`: shell completion scripts generated from the typer app.

The scripts call back into ``clipctl`` with ``_CLIPCTL_COMPLETE=complete_<shell>`` set; typer's completion
classes answer that. The app is built with ``add_completion=False`` (no ``--install-completion`` flags), so the
classes are registered here instead. The checked-in ``completions/`` files are regenerated with
``clipctl completions --write completions/``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli.console import out
from clipctl.fileio import check_output_target, write_text_atomic

PROG_NAME = "clipctl"
COMPLETE_VAR = "_CLIPCTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
FILE_SUFFIX = {"bash": "bash", "zsh": "zsh", "fish": "fish"}


def _register_completion_classes() -> None:
    # typer's classes speak the protocol its scripts use; registering them is cheap (no app is built).
    from typer._completion_classes import completion_init

    completion_init()


def completion_script(app: typer.Typer, shell: str) -> str:
    """The completion script for ``shell``, as the app's completion class renders it."""
    from typer._click.shell_completion import get_completion_class
    from typer.main import get_command

    from clipctl.errors import ClipctlError

    _register_completion_classes()
    if shell not in SHELLS:
        raise ClipctlError(f"unknown shell {shell!r}; choose one of {', '.join(SHELLS)}")
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - registered above
        raise ClipctlError(f"typer has no completion support for {shell}")
    comp = cls(get_command(app), {}, PROG_NAME, COMPLETE_VAR)
    # The template itself; BashComplete.source() would also probe the bash version, which is only a warning.
    return (cls.source_template % comp.source_vars()).strip() + "\n"


def script_file_name(shell: str) -> str:
    return f"{PROG_NAME}.{FILE_SUFFIX[shell]}"


def write_completion_scripts(app: typer.Typer, folder: Path, shells: tuple[str, ...] = SHELLS) -> list[Path]:
    check_output_target(folder, what="--write", kind="folder")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for shell in shells:
        path = folder / script_file_name(shell)
        write_text_atomic(path, completion_script(app, shell))
        written.append(path)
    return written


def register(app: typer.Typer) -> None:
    _register_completion_classes()  # so `_CLIPCTL_COMPLETE=complete_bash clipctl` is answered

    @app.command("completions")
    def completions(
        shell: str = typer.Argument(
            None,
            help="bash | zsh | fish (all three with --write).",
            autocompletion=lambda incomplete: [s for s in SHELLS if s.startswith(incomplete)],
        ),
        write: Path = typer.Option(
            None, "--write", help="Write clipctl.<shell> files into this folder instead of printing."
        ),
    ) -> None:
        """Print a shell completion script.

        bash: `source <(clipctl completions bash)` in ~/.bashrc. zsh: `source <(clipctl completions zsh)` in ~/.zshrc after compinit. fish: `clipctl completions fish > ~/.config/fish/completions/clipctl.fish`.
        """
        from clipctl.errors import ClipctlError

        if write is not None:
            shells = (shell,) if shell else SHELLS
            if shell and shell not in SHELLS:
                raise ClipctlError(f"unknown shell {shell!r}; choose one of {', '.join(SHELLS)}")
            for path in write_completion_scripts(app, write, shells):
                out.print(f"wrote {path}", highlight=False)
            return
        if not shell:
            raise ClipctlError(f"name a shell: clipctl completions {'|'.join(SHELLS)}")
        # Plain write: the script must reach the shell byte for byte, without rich's wrapping or markup.
        typer.echo(completion_script(app, shell), nl=False)
