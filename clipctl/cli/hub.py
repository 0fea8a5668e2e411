"""`clipctl push-to-hub`: publish a model in the Hub layout OpenCLIP reads, or write that layout locally."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli.console import out


def register(app: typer.Typer) -> None:
    @app.command("push-to-hub")
    def push_to_hub_command(
        model: str = typer.Option(
            None,
            "--model",
            help="Registry name, hf-hub:ORG/REPO, local-dir:PATH or a .json config. "
            "May be left out for a checkpoint inside a clipctl run folder (read from its config.yaml).",
        ),
        pretrained: str = typer.Option(
            None,
            "--pretrained",
            help="Pretrained tag or checkpoint file (e.g. runs/x/checkpoints/epoch_12.pt).",
        ),
        repo_id: str = typer.Option(
            None, "--repo-id", help="Hub repo to upload to: ORG/NAME or NAME (your namespace)."
        ),
        private: bool = typer.Option(False, "--private", help="Create the repo as private (new repos only)."),
        revision: str = typer.Option(
            None, "--revision", help="Branch to upload to (created if missing); default: main."
        ),
        commit_message: str = typer.Option(
            "Add model", "--commit-message", help="Commit message of the upload."
        ),
        local_dir: Path = typer.Option(
            None,
            "--local-dir",
            help="Write the layout into this folder instead of uploading (load it with local-dir:DIR).",
        ),
        write_bin: bool = typer.Option(
            False,
            "--bin/--no-bin",
            help="Also write open_clip_pytorch_model.bin (a pickle) for OpenCLIP versions before safetensors support.",
        ),
        overwrite: bool = typer.Option(
            False,
            "--overwrite",
            help="Replace a folder holding another model, and a README.md that clipctl did not write.",
        ),
        license_: str = typer.Option("mit", "--license", help="License in the model card's front matter."),
        unsafe_load: bool = typer.Option(
            False,
            "--unsafe-load",
            help="Allow pickled checkpoints that need code to load (trusted files only).",
        ),
    ) -> None:
        """Upload a model to the Hugging Face Hub (or write it with --local-dir) in OpenCLIP's layout.

        Writes open_clip_config.json, open_clip_model.safetensors, tokenizer files for Hugging Face text towers and a README.md model card. The token comes from `hf auth login` or HF_TOKEN and is never printed.
        """
        from clipctl.hub.push import push_to_hub, validate_repo_id

        if repo_id is not None or local_dir is None:
            validate_repo_id(repo_id)
        if local_dir is not None:
            from clipctl.hub.export import export_to_folder

            result = export_to_folder(
                model,
                pretrained,
                local_dir,
                repo_id=repo_id,
                write_bin=write_bin,
                overwrite=overwrite,
                license=license_,
                weights_only=not unsafe_load,
            )
            kept = " (kept the existing README.md)" if result.kept_readme else ""
            out.print(
                f"wrote {result.model_name} to {result.folder}: {', '.join(result.files)}{kept}",
                highlight=False,
                soft_wrap=True,
            )
            out.print(f"load it with local-dir:{result.folder}", highlight=False, soft_wrap=True)
            return
        result = push_to_hub(
            model,
            pretrained,
            repo_id,
            private=private,
            revision=revision,
            commit_message=commit_message,
            write_bin=write_bin,
            overwrite=overwrite,
            license=license_,
            weights_only=not unsafe_load,
        )
        where = f"{result.repo_id}@{result.revision}" if result.revision else result.repo_id
        kept = " (kept the repo's README.md)" if result.kept_readme else ""
        out.print(
            f"uploaded {', '.join(result.files)} to {where}{' (private)' if result.private else ''}{kept}",
            highlight=False,
            soft_wrap=True,
        )
        out.print(f"{result.url}\nload it with hf-hub:{result.repo_id}", highlight=False, soft_wrap=True)
