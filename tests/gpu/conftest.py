"""The GPU acceptance suite (tests/gpu): every test here is marked gpu and skipped, with the reason, without an
NVIDIA GPU or without vllm, trl and torch installed; the session's fixtures (the results file, the model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from acceptance import DRY, GPUS, MISSING, RESULTS, SHAPE, Results, _bench


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    reason = None if DRY else "no NVIDIA GPU (nvidia-smi finds none)" if not GPUS else f"needs {', '.join(MISSING)}" if MISSING else None
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.gpu)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def results() -> Results:
    return Results(RESULTS)


@pytest.fixture(scope="session")
def model() -> Path:
    _, budget_measure = _bench()
    return budget_measure.build(SHAPE["shape"])


