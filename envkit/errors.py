"""The two ways an envkit command ends in error, each with its exit code (envkit.exitcodes).

- ``UsageError`` (exit 2): the input is wrong: a recipe, an option, a facts file, an output path.  The
  message is one line (a recipe: one per problem) naming the file, field or option, and the fix.
- ``Failure`` (exit 1): the input was understood, and what it asked for did not happen: a launched process
  died, the run's folder is in use, a file envkit writes itself could not be.

Every exception envkit defines derives from one of the two (tests/test_errors.py walks the package), so a
command raises and never maps: ``envkit.cli`` turns either into one line on stderr, ``envkit COMMAND: message``,
and exits with the error's ``exit_code``.  Anything else that escapes a command is a bug and keeps its traceback.
Each class keeps the builtin base it had before (ValueError, RuntimeError, OSError), so an ``except ValueError``
written earlier still catches what it did.  Imports nothing of envkit but exitcodes: every layer may raise these.
"""

from __future__ import annotations

from envkit.exitcodes import FAILED, USAGE


class EnvkitError(Exception):
    """An error a command reports in one line; ``str()`` is that line (after ``envkit COMMAND: ``)."""

    exit_code: int


class UsageError(EnvkitError):
    """Bad input, named with its fix: exit 2."""

    exit_code = USAGE


class Failure(EnvkitError):
    """Good input, and the command could not do it: exit 1."""

    exit_code = FAILED


class OneLineError(UsageError):
    """A usage error that quotes the user's text (a key, a path, an option's value): line breaks and other
    unprintable characters in it are escaped (``learning\\nrate``) so the message stays one line.
    ``escaped=True``: the message did that itself (a recipe's several problems, one line each)."""

    def __init__(self, message: str, *, escaped: bool = False):
        super().__init__(message if escaped else
                         "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message))


class RecipeError(OneLineError, ValueError):
    """A recipe that cannot be used as written: its file (and line) and field, and what to write instead."""

    line: int | None = None  # the recipe line it names (for ordering several)


class OptionError(OneLineError):
    """A command-line option (or a pair of them) that cannot be honoured: it names the option and the way out."""


class OutputFolderError(OneLineError):
    """A run's output folder that envkit train may not use: not a folder, not writable, holding someone else's
    files, or holding a run and no --resume or --output saying what to do with it."""


# The click ctx.meta key a command group sets to its subcommand's name when that, not the group's, begins the
# group's error lines (envkit matrix solve: ..., where envkit recipes show says envkit recipes: ...).
SUBCOMMAND = "envkit.subcommand"
