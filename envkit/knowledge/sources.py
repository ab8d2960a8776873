"""What `envkit matrix refresh` reads: the index and, per package, the oldest release kept."""

DEFAULT_INDEX = "https://pypi.org/simple"
# Oldest release worth knowing per package; older ones predate GRPO support.
FLOORS = {
    "vllm": "0.10.2",
    "trl": "0.18.0",
    "torch": "2.6.0",
    "transformers": "4.52.0",
    "peft": "0.15.0",
    "accelerate": "1.4.0",
    "datasets": "3.4.0",
    "bitsandbytes": "0.45.0",
    "torchao": "0.13.0",
    "unsloth": "2025.11.1",
    "unsloth_zoo": "2025.11.1",
}
