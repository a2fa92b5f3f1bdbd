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

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def private_mounts(tmp_path):
    """Run a shell script in a mount namespace of its own (`unshare --user --map-root-user
    --mount`: no root needed, and its mounts vanish with it): a tiny tmpfs for a full disk, a
    read-only bind mount. The script gets PY (this Python) and TMP (the test's tmp_path)."""
    import os
    import subprocess
    import sys

    def run(script: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PY": sys.executable, "TMP": str(tmp_path)}
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-uc",
                               script], env=env, capture_output=True, text=True, timeout=600)

    return run
