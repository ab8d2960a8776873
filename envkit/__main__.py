"""`python -m envkit` = the `envkit` command (where the console script is not on PATH)."""

from envkit.cli import run

run()
