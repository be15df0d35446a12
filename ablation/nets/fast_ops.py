"""Fast CPU versions of the 2-D net's elementwise steps (see the fast layouts in
:mod:`ablation.nets.blocks`): the same values within float rounding, switched
off with the class attribute ``fast_layout = False``.

On the CPU, torch's ELU evaluates ``expm1`` one element at a time (it is not
vectorised), about 8x slower than the vectorised ``exp``; ELU is a tenth of
Spleeter's training step. ``max(exp(min(x, 0)) - 1, x)`` equals ELU (for
``x <= 0``, ``e^x - 1 >= x``; for ``x > 0`` the first term is 0) and runs on
one buffer, written in place.
"""

import torch
from torch import Tensor, nn


class ELU(nn.ELU):
    """``nn.ELU`` (``alpha = 1``), computed with the vectorised ``exp`` on the CPU.

    Differs from ``expm1`` by at most one float rounding of 1 (6e-8) where
    ``x`` is near 0 from below; the gradient is torch's own ELU backward.
    """

    fast_layout = True

    def forward(self, x: Tensor) -> Tensor:
        """Same as ``nn.ELU``."""
        if not self.fast_layout or x.device.type != "cpu" or self.alpha != 1.0 or self.inplace:
            return super().forward(x)
        return _ExpELU.apply(x)


class _ExpELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clamp(max=0).exp_().sub_(1)
        torch.maximum(y, x, out=y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1, 1, True, y)
