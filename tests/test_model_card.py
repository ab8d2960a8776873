"""TRL's model card names the recipe's base model (envkit.train.models.name_base_in_card), never None."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from envkit.recipe.library import find_recipe
from envkit.recipe.load import load_recipe
from envkit.train.models import name_base_in_card


class Trainer:
    """What create_model_card reads: the model's config, whose _name_or_path TRL drops when it is a folder."""

    def __init__(self, path: str):
        self.model = SimpleNamespace(config=SimpleNamespace(_name_or_path=path))
        self.seen: list[str] = []

    def create_model_card(self, model_name=None):
        self.seen.append(self.model.config._name_or_path)


@pytest.mark.parametrize("name,base", [
    (None, "envkit tiny model (model.build, seed 0)"),
    ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B"),
    ("FOLDER", "FOLDER (a local folder)"),
])
def test_the_card_names_the_recipes_model_and_the_config_is_left_as_it_was(tmp_path, name, base):
    recipe = load_recipe(find_recipe("tiny"))
    if name is not None:
        name = str(tmp_path) if name == "FOLDER" else name
        recipe = replace(recipe, model=replace(recipe.model, name=name, build=None))
    trainer = Trainer("/cache/built/tiny")
    name_base_in_card(trainer, recipe)
    trainer.create_model_card(model_name="run")
    assert trainer.seen == [base.replace("FOLDER", str(tmp_path))]
    assert trainer.model.config._name_or_path == "/cache/built/tiny"
