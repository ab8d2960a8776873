"""The exit codes every envkit command shares (documented in each command's --help)."""

FAILED = 1  # a check failed, a run was refused, a build or a launched process failed
USAGE = 2  # bad input: a recipe, an option, a facts file; one line says which and what to do
STALE_WEIGHTS = 3  # envkit train, guard: stop: generation was not running on the trained weights (checkpoint saved)
NO_LEARNING = 4  # envkit train, guard: stop: steps in a row trained on nothing (checkpoint saved)
INTERRUPTED = 130  # Ctrl-C: the shell's convention (128 + SIGINT)
TERMINATED = 143  # SIGTERM (docker stop, a scheduler): 128 + SIGTERM


class Terminated(SystemExit):
    """SIGTERM as an exception (raise_terminated): `finally` blocks run (a launcher's teardown, a temporary
    file's removal) and, uncaught, the command exits 143 without a traceback."""

    def __init__(self):
        super().__init__(TERMINATED)


def raise_terminated(signum, frame) -> None:
    """The SIGTERM handler of every envkit command (envkit.cli.run).  Without one, PID 1 (the image's
    entrypoint) ignores SIGTERM, so `docker stop` waits for its SIGKILL; elsewhere the process just dies,
    leaving what it started running."""
    raise Terminated
