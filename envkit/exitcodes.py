"""The exit codes every envkit command shares (documented in each command's --help)."""

FAILED = 1  # a check failed, a run was refused, a build or a launched process failed
USAGE = 2  # bad input: a recipe, an option, a facts file; one line says which and what to do
INTERRUPTED = 130  # Ctrl-C: the shell's convention (128 + SIGINT)
TERMINATED = 143  # SIGTERM (docker stop, a scheduler): 128 + SIGTERM
