"""``clipctl train ARGS`` in this process, SIGKILLed by itself just before optimizer step ``KILL_AT`` runs.

Usage: python kill_worker.py KILL_AT -- train ARGS... The kill is real (no clean-up runs); the hook only
decides when it lands, so the test does not depend on timing. Under a launcher (torchrun, or srun-style
``RANK``/``WORLD_SIZE`` variables) ``KILL_RANK`` names the one rank that dies (default: every rank), only in the
first attempt of a torchrun job (a restarted job runs through), ``KILL_STAMP`` names a file that receives
the time of the kill, and ``KILL_SIGNAL=STOP`` freezes the rank instead (a rank that hangs).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from clipctl.cli.main import main
from clipctl.train import trainer


def _should_kill() -> bool:
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return False
    target = os.environ.get("KILL_RANK")
    return target is None or target == os.environ.get("RANK", "0")


def install_kill(kill_at: int) -> None:
    real_step = trainer.train_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at and _should_kill():
            if os.environ.get("KILL_STAMP"):
                with open(os.environ["KILL_STAMP"], "w") as fh:
                    fh.write(repr(time.time()))
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("KILL_SIGNAL", "KILL")))
        return real_step(*args, **kwargs)

    trainer.train_step = step


if __name__ == "__main__":
    split = sys.argv.index("--")
    install_kill(int(sys.argv[1]))
    sys.exit(main(sys.argv[split + 1 :]))
