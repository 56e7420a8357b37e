import shutil

import pytest

from tests.images.registrykit import LocalRegistry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A real docker-registry on 127.0.0.1, for this test module."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (Debian: apt-get install docker-registry)")
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda_image: builds the cuda runtime image (about 1.5 GB of CUDA wheels)")
