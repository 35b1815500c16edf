"""Parity of xmodal's contrastive losses with open_clip's ``ClipLoss`` and ``SigLipLoss``, forward and
backward, plain and chunked.

open_clip is a test-only dependency (``pip install --no-deps open_clip_torch==3.3.0``). Its package
``__init__`` imports torchvision, so only ``open_clip/loss.py`` is loaded, as a file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from xmodal.losses.contrastive import clip_loss
from xmodal.losses.siglip import siglip_loss


@pytest.fixture(scope="module")
def open_clip_loss() -> ModuleType:
    spec = importlib.util.find_spec("open_clip")  # finds the package without running its __init__
    assert spec is not None and spec.submodule_search_locations, (
        "open_clip_torch is a test dependency (make test: pip install --no-deps open_clip_torch==3.3.0)"
    )
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    file_spec = importlib.util.spec_from_file_location("open_clip_loss", path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


def leaves(n: int, d: int, dtype: torch.dtype, scale: float, bias: float, seed: int = 0):
    """Unit image features and captions that partly agree with them, plus scale and bias leaves."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=g, dtype=torch.float64)
    txt = F.normalize(img + torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    img = F.normalize(img, dim=-1)
    values = (img, txt, torch.tensor(scale, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64))
    return [v.to(dtype).requires_grad_(True) for v in values]


def value_and_grads(fn, inputs):
    loss = fn(*inputs)
    return (loss, *torch.autograd.grad(loss, inputs))


CASES = [(torch.float64, 1e-10, 1e-10, 1e-10), (torch.float32, 1e-5, 1e-5, 1e-6)]


@pytest.mark.parametrize(("dtype", "loss_rtol", "grad_rtol", "grad_atol"), CASES)
@pytest.mark.parametrize("chunk_size", [None, 96, 1024])
def test_clip_loss_matches_open_clip(open_clip_loss, dtype, loss_rtol, grad_rtol, grad_atol, chunk_size):
    n, d = 300, 64
    theirs = open_clip_loss.ClipLoss()
    inputs = leaves(n, d, dtype, scale=1 / 0.07, bias=0.0)[:3]
    want = value_and_grads(lambda i, t, s: theirs(i, t, s), inputs)
    got = value_and_grads(lambda i, t, s: clip_loss(i, t, s, chunk_size=chunk_size), inputs)
    torch.testing.assert_close(got[0], want[0], rtol=loss_rtol, atol=0)
    for g, w in zip(got[1:], want[1:], strict=True):
        torch.testing.assert_close(g, w, rtol=grad_rtol, atol=grad_atol)


@pytest.mark.parametrize(("dtype", "loss_rtol", "grad_rtol", "grad_atol"), CASES)
@pytest.mark.parametrize("chunk_size", [None, 96, 1024])
@pytest.mark.parametrize(("scale", "bias"), [(10.0, -10.0), (25.0, -3.0)])
def test_siglip_loss_matches_open_clip(
    open_clip_loss, dtype, loss_rtol, grad_rtol, grad_atol, chunk_size, scale, bias
):
    n, d = 300, 64
    theirs = open_clip_loss.SigLipLoss()
    inputs = leaves(n, d, dtype, scale=scale, bias=bias)
    want = value_and_grads(lambda i, t, s, b: theirs(i, t, s, b), inputs)
    got = value_and_grads(lambda i, t, s, b: siglip_loss(i, t, s, b, chunk_size=chunk_size), inputs)
    torch.testing.assert_close(got[0], want[0], rtol=loss_rtol, atol=0)
    for g, w in zip(got[1:], want[1:], strict=True):
        torch.testing.assert_close(g, w, rtol=grad_rtol, atol=grad_atol)


def test_open_clip_modules_are_the_real_ones(open_clip_loss):
    """Guard against comparing with a stand-in: the file is open_clip's and defines both classes."""
    assert Path(open_clip_loss.__file__).parts[-2:] == ("open_clip", "loss.py")
    assert issubclass(open_clip_loss.ClipLoss, torch.nn.Module)
    assert "Sigmoid Loss for Language Image Pre-Training" in (open_clip_loss.SigLipLoss.__doc__ or "")
