"""No text envkit prints keeps a template's `{placeholder}` (issue #24: `--explain EK603` printed `{transformers}`)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from packaging.specifiers import SpecifierSet

from envkit.catalog import PATCHES, all_checks
from envkit.cli import main
from envkit.rules import DOCTOR_CHECKS, Severity
from envkit.rules.known import CHECKS
from tests.conftest import make_facts

PLACEHOLDER = re.compile(r"\{[A-Za-z_][\w-]*\}")


@pytest.mark.parametrize("key", [check.id for check in all_checks()] + list(PATCHES))
def test_explain_prints_no_placeholder(key):
    result = CliRunner().invoke(main, ["doctor", "--explain", key])
    assert result.exit_code == 0 and key in result.output
    assert not PLACEHOLDER.findall(result.output)


def _inside(spec: str) -> str:
    """A version inside ``spec``: one of its own bounds, or a low or high one."""
    specifiers = SpecifierSet(spec)
    return next(v for v in [s.version for s in specifiers] + ["0.0.1", "1.0.0", "99.0.0"]
                if specifiers.contains(v, prereleases=True))


@pytest.mark.parametrize("entry, window", [(e, w) for e in CHECKS for w in e["windows"]],
                         ids=lambda value: value["id"] if "id" in value else ",".join(value))
def test_every_fix_template_renders_with_real_versions(entry, window):
    versions = {name: _inside(spec) for name, spec in window.items()}
    finding = DOCTOR_CHECKS[entry["id"]].finding(make_facts("h100", versions))
    assert finding.severity in (Severity.FAIL, Severity.WARN), (versions, finding.title)
    for text in (finding.title, finding.evidence, finding.fix, *finding.requirements):
        assert not PLACEHOLDER.findall(text), text
    assert all(v in finding.title for v in versions.values())


def test_a_gpu_family_suggests_its_members_before_a_look_alike():
    result = CliRunner().invoke(main, ["doctor", "--target", "a100"])
    assert result.exit_code == 2
    assert "did you mean a100-40gb or a100-80gb?" in result.stderr and "v100?" not in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["matrix", "--help"]])
def test_help_lists_commands_whole_in_the_users_order(args):
    result = CliRunner().invoke(main, args, terminal_width=80)
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands
    if args == ["--help"]:
        listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ") and line[2] != " "]
        assert listed[:5] == ["doctor", "train", "generate", "report", "recipes"]
