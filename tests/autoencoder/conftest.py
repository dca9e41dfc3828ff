import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: extra threads only spin, and on a shared 2-core machine they oversubscribe."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
