import pytest

from triton_repo.serving import Served, exported, served


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_t5_dir):
    """The tiny T5 student exported to ONNX (fp32) with its compiled grammar."""
    return exported(tmp_path_factory, tiny_t5_dir)


@pytest.fixture(scope="session")
def triton_served(request, tmp_path_factory, tiny_t5_dir) -> Served:
    """A running tritonserver serving the tiny export (cpu profile)."""
    return served(request, tmp_path_factory, tiny_t5_dir)
