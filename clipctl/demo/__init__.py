"""`clipctl demo`: the toolkit end to end on generated data (see :mod:`clipctl.demo.pipeline`)."""

from clipctl.demo.pipeline import DemoReport, LossSummary, run_demo
from clipctl.demo.settings import DEFAULT, QUICK, DemoSettings

__all__ = ["DEFAULT", "QUICK", "DemoReport", "DemoSettings", "LossSummary", "run_demo"]
