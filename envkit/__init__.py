"""envkit: a working GRPO + vLLM environment, checked, locked and run."""

__version__ = "0.1.0"
