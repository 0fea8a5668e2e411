"""Build hook: ship the top-level ``recipes/`` and ``completions/`` folders inside the ``clipctl`` package.

The design keeps recipes at the repository root (``recipes/*.yaml``, edited and reviewed as data), but an
installed wheel has no repository root. ``build_py`` copies both folders to ``clipctl/recipes`` and
``clipctl/completions`` in the build tree, so wheels (and wheels built from the sdist, which carries the folders
through MANIFEST.in) hold them where ``clipctl.config.recipes`` looks first. Everything else is declared in
pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# source folder at the repository root -> folder inside the installed clipctl package
TOP_LEVEL_DATA = {"recipes": "recipes", "completions": "completions"}


def _top_level_files(build_lib: str) -> list[tuple[Path, Path]]:
    """(file in the checkout, where it goes in the build tree) for every shipped top-level data file."""
    return [
        (path, Path(build_lib, "clipctl", target, path.name))
        for source, target in TOP_LEVEL_DATA.items()
        for path in sorted(Path(source).glob("*"))
        if path.is_file() and not path.name.startswith(".")
    ]


class BuildPyWithTopLevelData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the folders from the checkout itself
            return
        for source, target in _top_level_files(self.build_lib):
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return super().get_outputs(include_bytecode) + [str(t) for _, t in _top_level_files(self.build_lib)]


setup(cmdclass={"build_py": BuildPyWithTopLevelData})
