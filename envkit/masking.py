"""Secrets never leave the machine: how a variable's value is written into a report, a facts file or a log.

Beside the facts (a facts file replayed by hand may hold real secrets, so loading one masks it again) and
below the probe, which masks what it reads with the same function.
"""

from __future__ import annotations

import re

SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# Names that look like credentials are masked whatever the variable is (VLLM_API_KEY too).
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL", re.IGNORECASE)
SET = "<set>"
# Inside a URL, whatever the variable is called (VLLM_SERVER_URL=https://user:pass@host): the user info
# before the host, and query parameters that name a credential (?token=..., ?api_key=..., ?sig=...).
URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
URL_SECRET_QUERY = re.compile(r"(?P<name>[?&;][^=&;#\s]*(?:TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL|SIG)[^=&;#\s]*=)[^&;#\s]*",
                              re.IGNORECASE)


def mask_env(env: dict[str, str]) -> dict[str, str]:
    """A facts file's env as the probe would have written it: a hand-edited one may hold real secrets."""
    return {name: masked(name, value) for name, value in env.items()}


def masked(name: str, value: str) -> str:
    """A secret-named variable as <set>; any other value with the credentials in its URLs replaced by <set>."""
    if name in SECRETS or SECRET_NAME.search(name):
        return value if value == "<unset>" else SET
    if "://" not in value:
        return value
    return URL_SECRET_QUERY.sub(rf"\g<name>{SET}", URL_USERINFO.sub(rf"\g<scheme>{SET}@", value))
