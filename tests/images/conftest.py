import os
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With OPENSCORE_REQUIRE_IMAGE_TESTS=1 (.ci/run sets it, having installed the tools), an image test that
    skips fails instead: a green CI must say the images were built and run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("OPENSCORE_REQUIRE_IMAGE_TESTS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"image test skipped where it is required (OPENSCORE_REQUIRE_IMAGE_TESTS=1): {reason}"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda_image: builds the cuda runtime image (about 1.5 GB of CUDA wheels); "
                                       "collected only with OPENSCORE_TEST_FLAVOURS=all")


def pytest_collection_modifyitems(config, items):
    """The cuda image takes longer to build than CI's whole image budget: deselected (not skipped, so that CI's
    no-skip rule holds) unless OPENSCORE_TEST_FLAVOURS=all. images/bench-builds.sh builds and times it."""
    if os.environ.get("OPENSCORE_TEST_FLAVOURS") == "all":
        return
    cuda = [item for item in items if item.get_closest_marker("cuda_image")]
    if cuda:
        config.hook.pytest_deselected(items=cuda)
        items[:] = [item for item in items if item not in cuda]
