"""``clipctl train ARGS`` in this process, SIGKILLed by itself just before optimizer step ``KILL_AT`` runs.

Usage: python kill_worker.py KILL_AT -- train ARGS... The kill is real (no clean-up runs); the hook only
decides when it lands, so the test does not depend on timing.
"""

from __future__ import annotations

import os
import signal
import sys

from clipctl.cli.main import main
from clipctl.train import trainer


def install_kill(kill_at: int) -> None:
    real_step = trainer.train_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(*args, **kwargs)

    trainer.train_step = step


if __name__ == "__main__":
    split = sys.argv.index("--")
    install_kill(int(sys.argv[1]))
    sys.exit(main(sys.argv[split + 1 :]))
