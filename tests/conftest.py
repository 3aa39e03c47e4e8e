"""Shared fixtures. Torch runs on one thread in tests (the machines have 2 cores)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from tracekws.service.process import ServerProcess, free_port  # noqa: F401 (tests import it)

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    # starlette's TestClient announces a future switch to httpx2; nothing to act on here
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with")


def pytest_collection_modifyitems(config, items):
    """tests/e2e/ (real server processes, a browser, PostgreSQL, the CLI) is marked ``slow``:
    CI and the README's command run everything; ``-m "not slow"`` is the quick loop."""
    e2e = ROOT / "tests" / "e2e"
    for item in items:
        if e2e in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)


def _random_model(path: Path, n_hidden: int = 64, seed: int = 0) -> Path:
    from tracekws.model.pipeline import KWSModel, ModelConfig

    torch.manual_seed(seed)
    KWSModel(ModelConfig(n_hidden=n_hidden)).save(path)
    return path.with_suffix(".safetensors")


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory) -> Path:
    """An untrained 64-hidden model file: fast, for plumbing tests."""
    return _random_model(tmp_path_factory.mktemp("model") / "small.safetensors")


@pytest.fixture(scope="session")
def shipped_model_path() -> Path:
    """The shipped pretrained model (or $TRACEKWS_TEST_MODEL, to try a candidate); tests that
    need a trained network skip without it."""
    from tracekws.model.pipeline import PRETRAINED

    if os.environ.get("TRACEKWS_TEST_MODEL"):
        return Path(os.environ["TRACEKWS_TEST_MODEL"])
    if not PRETRAINED.is_file():
        pytest.skip(f"no shipped model at {PRETRAINED}")
    return PRETRAINED


@pytest.fixture(scope="session")
def model_path(small_model_path) -> Path:
    """The shipped model if present, else the small random one."""
    from tracekws.model.pipeline import PRETRAINED

    return PRETRAINED if PRETRAINED.is_file() else small_model_path


# ---- service ---------------------------------------------------------------------------------
FAST_ADAPT = {"epochs": 1}  # adaptation hyperparameters that keep tests quick


@pytest.fixture
def service_settings(tmp_path, small_model_path) -> Callable[..., object]:
    """Factory: Settings for an isolated service (own data dir) on the small model."""
    from tracekws.service.settings import Settings

    def make(**overrides):
        values = {"data_dir": tmp_path / "data", "model_path": small_model_path,
                  "compute_threads": 2, "torch_threads": 1, "adapt_hyperparameters": FAST_ADAPT}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client(service_settings) -> Iterator[Callable[..., object]]:
    """Factory: a started TestClient (lifespan run) for given setting overrides."""
    from fastapi.testclient import TestClient
    from tracekws.service.main import create_app

    clients = []

    def make(**overrides):
        c = TestClient(create_app(service_settings(**overrides)))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture(scope="module")
def uvicorn_server(tmp_path_factory, small_model_path
                   ) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start real uvicorn processes (each on its own data dir unless one is given;
    stopped at the end of the test module)."""
    procs: list[ServerProcess] = []

    def start(data_dir: Path | None = None, model: Path | None = None, **env: str):
        d = data_dir or tmp_path_factory.mktemp("server") / "data"
        d.mkdir(parents=True, exist_ok=True)
        p = ServerProcess(d, model or small_model_path, {"TRACEKWS_TORCH_THREADS": "1",
                          "TRACEKWS_COMPUTE_THREADS": "2", **env}).start(timeout=60)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()
