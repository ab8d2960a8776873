"""Environment variables that change how the stack behaves; secrets only as set/unset."""

from __future__ import annotations

import re

WATCHED = (
    "TRITON_DISABLE_PDL",
    "UNSLOTH_VLLM_STANDBY",
    "PYTORCH_CUDA_ALLOC_CONF",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "CUDA_HOME",
    "NCCL_P2P_DISABLE",
    "NCCL_IB_DISABLE",
    "NCCL_SOCKET_IFNAME",
)
WATCHED_PREFIXES = ("VLLM_",)
SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# Names that look like credentials are masked even under a watched prefix.
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL", re.IGNORECASE)
SET = "<set>"
# Inside a URL, whatever the variable is called (VLLM_SERVER_URL=https://user:pass@host): the user info
# before the host, and query parameters that name a credential (?token=..., ?api_key=..., ?sig=...).
URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
URL_SECRET_QUERY = re.compile(r"(?P<name>[?&;][^=&;#\s]*(?:TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL|SIG)[^=&;#\s]*=)[^&;#\s]*",
                              re.IGNORECASE)


def probe_env(environ: dict[str, str]) -> dict[str, str]:
    seen = {}
    for name, value in environ.items():
        if name in WATCHED or name.startswith(WATCHED_PREFIXES):
            seen[name] = _masked(name, value)
    for name in SECRETS:
        seen[name] = SET if environ.get(name) else "<unset>"
    return dict(sorted(seen.items()))


def mask_env(env: dict[str, str]) -> dict[str, str]:
    """A facts file's env as the probe would have written it: a hand-edited one may hold real secrets."""
    return {name: _masked(name, value) for name, value in env.items()}


def _masked(name: str, value: str) -> str:
    """A secret-named variable as <set>; any other value with the credentials in its URLs replaced by <set>."""
    if name in SECRETS or SECRET_NAME.search(name):
        return value if value == "<unset>" else SET
    if "://" not in value:
        return value
    return URL_SECRET_QUERY.sub(rf"\g<name>{SET}", URL_USERINFO.sub(rf"\g<scheme>{SET}@", value))
