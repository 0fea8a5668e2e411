"""``clipctl ARGS`` with OpenAI's 80 zero-shot templates cut to the first one, so that a zero-shot evaluation
over ImageNet's 1000 class names takes a second on a tiny model (run under torchrun by the tests).

Usage: torchrun ... fsdp_eval_worker.py -- train ARGS (the ``--`` keeps torchrun from reading ``--logs``)."""

from __future__ import annotations

import sys

import clipctl.eval.zeroshot_metadata as metadata
from clipctl.cli.main import main

if __name__ == "__main__":
    metadata.OPENAI_IMAGENET_TEMPLATES = metadata.OPENAI_IMAGENET_TEMPLATES[:1]
    args = sys.argv[1:]
    sys.exit(main(args[1:] if args[:1] == ["--"] else args))
