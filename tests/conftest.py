"""Settings every test shares."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread: the tests use tiny tensors, for which a thread pool on a small CPU only adds
    contention, and CPU results are bit-reproducible only at a fixed thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
