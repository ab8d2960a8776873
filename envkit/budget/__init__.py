"""VRAM budget of colocated GRPO training and vLLM generation: predict, recommend, verify."""
