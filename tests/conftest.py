import pytest

from autostage.host import load_registry


@pytest.fixture(scope="session")
def registry():
    """The installed plugins (built-ins through their entry points)."""
    return load_registry()
