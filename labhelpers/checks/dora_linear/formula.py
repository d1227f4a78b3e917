"""PEFT's DoRA forward written out in parts, so that a known mistake is the same formula with one part changed.

With V = W + s·B·A and n = ‖V‖ per row (detached: paper §4.3, Eq. 11), PEFT 0.21 computes
y = base(x) + (m/n − 1)·(x_d Wᵀ) + (m/n)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x) on the adapter path only (the dropout
form is PEFT's and the authors' code's, not the paper's). `DoRAForward()` is that formula. Like PEFT's variant classes,
which keep DoRA's behaviour apart from the LoRA layer, the formula's parts live in one record and its call only
dispatches: a known mistake (labhelpers.checks.dora_linear.mistakes) changes one field, and two mistakes that change
different fields make one record together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DoRAInputs:
    """One forward pass of a DoRA layer: its tensors and its input (the case every variant of the formula is run on).

    Attributes:
        x: the input, (..., in_features).
        x_d: lora_dropout(x), the same shape, or None when no dropout is drawn (eval mode, or lora_dropout=0).
        W: the frozen base weight, (out_features, in_features).
        b: the frozen base bias, (out_features,), or None.
        A: lora_A, (r, in_features).
        B: lora_B, (out_features, r).
        m: the magnitude, (out_features, 1).
        scaling: lora_alpha / r.
    """

    x: torch.Tensor
    x_d: torch.Tensor | None
    W: torch.Tensor
    b: torch.Tensor | None
    A: torch.Tensor
    B: torch.Tensor
    m: torch.Tensor
    scaling: float


@dataclass(frozen=True)
class DoRAForward:
    """How a DoRA layer's output is computed: PEFT's formula (the defaults), or with known mistakes (changed fields).

    Attributes:
        scaling: the scaling of B·A in the output, and in the norm unless norm_scaling differs; None: the inputs'.
        norm_scaling: the scaling of B·A inside ‖V‖; None: the same as `scaling`.
        norm_dim: the dimension ‖V‖ is taken over; 1 gives one norm per output feature, PEFT's.
        norm_of_W: take the norm of the frozen W instead of the adapted V.
        detach: detach ‖V‖ (paper §4.3, Eq. 11); False gives the gradients of §4.2, Eq. 6.
        magnitude: multiply by the magnitude; False keeps the unit direction alone.
        dropout: where the dropped-out x_d goes: "adapter" (PEFT: both adapter terms), "everywhere" (the frozen path
            too) or "lora_only" (the (m/n − 1)·x Wᵀ correction takes the clean x).
        dropout_applied: False computes train mode as if no dropout were drawn (x_d = x).
        bias: "add" (PEFT), "lost", "scaled" (multiplied by m/n) or "twice".
    """

    scaling: float | None = None
    norm_scaling: float | None = None
    norm_dim: int = 1
    norm_of_W: bool = False
    detach: bool = True
    magnitude: bool = True
    dropout: str = "adapter"
    dropout_applied: bool = True
    bias: str = "add"

    def __call__(self, inputs: DoRAInputs) -> torch.Tensor:
        """Return the output, (..., out_features)."""
        factor = self.factor(inputs)  # (out, 1), or (out, in) for a norm over dim=0
        if factor.shape[1] == 1:
            row_factor = factor.T  # scales output features: (1, out)
            return self._bias(self._factored(inputs, row_factor), inputs.b, row_factor)
        return self._bias(self._merged(inputs, factor), inputs.b, None)

    def factor(self, inputs: DoRAInputs) -> torch.Tensor:
        """Return m / ‖V‖: (out, 1) for row norms, (out, in) for a norm over dim=0."""
        s_norm = self._scaling(inputs) if self.norm_scaling is None else self.norm_scaling
        V = inputs.W if self.norm_of_W else inputs.W + s_norm * (inputs.B @ inputs.A)
        norm = torch.linalg.vector_norm(V, dim=self.norm_dim, keepdim=True)
        if self.detach:
            norm = norm.detach()
        return inputs.m / norm if self.magnitude else 1 / norm

    def _scaling(self, inputs: DoRAInputs) -> float:
        return inputs.scaling if self.scaling is None else self.scaling

    def _x_d(self, inputs: DoRAInputs) -> torch.Tensor:
        return inputs.x if inputs.x_d is None or not self.dropout_applied else inputs.x_d

    def _factored(self, inputs: DoRAInputs, factor: torch.Tensor) -> torch.Tensor:
        """Compute PEFT's form, x Wᵀ + (m/n − 1)·(x_d Wᵀ) + (m/n)·s·(x_d Aᵀ Bᵀ), with factor = m/n as (1, out)."""
        x, x_d, W = inputs.x, self._x_d(inputs), inputs.W
        adapter = factor * self._scaling(inputs) * (x_d @ inputs.A.T @ inputs.B.T)
        if self.dropout == "everywhere":
            return factor * (x_d @ W.T) + adapter
        x_w = x if self.dropout == "lora_only" else x_d
        return x @ W.T + (factor - 1) * (x_w @ W.T) + adapter

    def _merged(self, inputs: DoRAInputs, factor: torch.Tensor) -> torch.Tensor:
        """Compute x_d (factor·(W + s·B·A))ᵀ: a per-element factor (norm over dim=0) cannot be factored out of x."""
        W_prime = factor * (inputs.W + self._scaling(inputs) * (inputs.B @ inputs.A))
        return self._x_d(inputs) @ W_prime.T

    def _bias(self, y: torch.Tensor, b: torch.Tensor | None, factor: torch.Tensor | None) -> torch.Tensor:
        """Add the bias as this variant does; a bias scaled by a per-element factor is lost, as no row scales it."""
        if b is None:
            return y
        if self.bias == "add":
            return y + b
        if self.bias == "twice":
            return y + 2 * b
        if self.bias == "scaled" and factor is not None:
            return y + factor * b
        return y


PEFT_DORA = DoRAForward()
"""PEFT's DoRA forward: the reference every output is compared with."""
