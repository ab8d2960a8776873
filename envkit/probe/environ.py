"""Environment variables that change how the stack behaves; secrets only as set/unset (envkit.masking)."""

from __future__ import annotations

from envkit.masking import SECRETS, SET, masked

WATCHED = (
    "TRITON_DISABLE_PDL",
    "UNSLOTH_VLLM_STANDBY",
    "UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "CUDA_HOME",
    "NCCL_P2P_DISABLE",
    "NCCL_IB_DISABLE",
    "NCCL_SOCKET_IFNAME",
)
WATCHED_PREFIXES = ("VLLM_",)


def probe_env(environ: dict[str, str]) -> dict[str, str]:
    seen = {}
    for name, value in environ.items():
        if name in WATCHED or name.startswith(WATCHED_PREFIXES):
            seen[name] = masked(name, value)
    for name in SECRETS:
        seen[name] = SET if environ.get(name) else "<unset>"
    return dict(sorted(seen.items()))
