"""Shared test setup: one torch thread (tiny matmuls are far faster without thread hand-offs on a
shared 2-core machine), and the path of the real data sets beside the checkout."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("real data sets are not beside this checkout (../shared/data)")
    return SHARED_DATA
