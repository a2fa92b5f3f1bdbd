import pytest

from autostage.host import load_registry


@pytest.fixture(scope="session")
def registry():
    """The installed plugins (built-ins through their entry points)."""
    return load_registry()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every search test: starting Ray costs seconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()
