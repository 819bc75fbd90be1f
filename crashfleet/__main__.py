from crashfleet.cli import run

run()
