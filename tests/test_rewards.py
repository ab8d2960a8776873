"""The builtin rewards, and docs/rewards.md's worked example run as the page tells a user to run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from envkit.train.rewards import digits

DOC = Path(__file__).resolve().parents[1] / "docs" / "rewards.md"


def test_digits_is_the_share_of_digit_characters():
    assert digits(["q"] * 4, ["42", "a1b2", "", "none"]) == [1.0, 0.5, 0.0, 0.0]
    assert digits(["q"], [[{"role": "assistant", "content": "7 "}]]) == [0.5]  # a chat completion's last message


def test_the_docs_worked_example_and_its_test_pass(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    module = next(b for b in blocks if b.startswith("# my_rewards.py"))
    test = next(b for b in blocks if b.startswith("# test_my_rewards.py"))
    (tmp_path / "my_rewards.py").write_text(module)
    (tmp_path / "test_my_rewards.py").write_text(test)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_rewards.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:]
