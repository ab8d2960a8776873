"""TRL's rule for the generation batch, checked before anything loads (the loader, and the budget again for a
recipe changed since)."""

from __future__ import annotations

from envkit.recipe.schema import Recipe, gpu_count


def generation_batch_problem(recipe: Recipe) -> str | None:
    """Why TRL 1.16 would refuse the generation batch (GRPOConfig.__post_init__), or None.

    One generation batch is per_device_train_batch_size x training ranks x gradient_accumulation_steps
    completions and must hold whole groups of num_generations.  Ranks: resources.training_gpus per
    machine (1 when unset: stricter than TRL where the server-mode default leaves several).
    """
    g = recipe.grpo
    ranks = (gpu_count(recipe.resources.training_gpus) or 1) * recipe.distributed.num_machines
    completions = g.per_device_train_batch_size * ranks * g.gradient_accumulation_steps
    if completions % g.num_generations == 0:
        return None
    per_rank = f" x {ranks} training ranks" if ranks > 1 else ""
    return (f"grpo.per_device_train_batch_size{per_rank} x gradient_accumulation_steps = {completions} "
            f"is not a multiple of grpo.num_generations ({g.num_generations}): TRL refuses it; "
            "make the batch a multiple of it")
