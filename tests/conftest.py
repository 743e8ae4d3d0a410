"""Shared test setup: hypothesis profiles (CI is derandomized so a red run reproduces), tiny models."""
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def tiny_cfg():
    from bitcheck.config import ModelConfig
    return ModelConfig(vocab_size=21, n_embd=32, n_layer=2, n_head=4, n_kv_head=2, ffn_hidden=64, block_size=64)
