from clipctl.cli.main import run

run()
