"""Secrets never leave the machine: every variable or URL envkit prints or stores goes through ``masked`` (a
variable) or ``mask_text`` (a URL or any text that may hold one: an index URL, a path such as HF_HOME).

Beside the facts (a facts file replayed by hand may hold real secrets, so loading one masks it again) and
below the probe, which masks what it reads with the same function.
"""

from __future__ import annotations

import re

SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# Names that look like credentials are masked whatever the variable is (VLLM_API_KEY, VLLM_PWD, VLLM_BEARER too);
# PWD alone is the shell's working folder, a secret only as part of a longer name.
SECRET_WORDS = r"TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL|BEARER|JWT|COOKIE|SESSION|SIG|(?<=[_-])PWD|^PWD(?=[_-])"
SECRET_NAME = re.compile(SECRET_WORDS, re.IGNORECASE)
SET = "<set>"
# The user info of a URL, with a scheme (https://user:pass@host), without one (//user:pass@host), or a bare
# user:pass@host: everything before the @ of the authority.
USERINFO = re.compile(r"(?P<lead>(?:\b[A-Za-z][A-Za-z0-9+.-]*:)?//)[^\s/?#\"']*@"
                      r"|(?<![^\s\"'=,;(<\[])[^\s/?#@\"':=,;]+:[^\s/?#\"']*@")
# Query or fragment parameters whose name looks like a credential (?token=, &api_key=, #access_token=, ?jwt=).
SECRET_PARAM = re.compile(rf"(?P<name>[?&;#](?:[^=&;#\s]*(?:{SECRET_WORDS.replace('^', '')})[^=&;#\s]*)=)[^&;#\s]*",
                          re.IGNORECASE)


def mask_env(env: dict[str, str]) -> dict[str, str]:
    """A facts file's env as the probe would have written it: a hand-edited one may hold real secrets."""
    return {name: masked(name, value) for name, value in env.items()}


def masked(name: str, value: str) -> str:
    """A secret-named variable as <set>; any other value with the credentials in its URLs replaced by <set>."""
    if name in SECRETS or SECRET_NAME.search(name):
        return value if value == "<unset>" else SET
    return mask_text(value)


def mask_text(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by <set>: user info, and query or fragment
    parameters named like a credential."""
    if "@" not in text and "=" not in text:
        return text
    return SECRET_PARAM.sub(rf"\g<name>{SET}", USERINFO.sub(rf"\g<lead>{SET}@", text))
