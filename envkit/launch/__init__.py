"""Runs beyond one process: TRL's vLLM server mode and multi-GPU training (`plan` is data, `procs` runs it)."""
