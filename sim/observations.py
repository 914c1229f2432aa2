"""Observation assembly from named signals; the same module runs in sim and in the policy file."""

from __future__ import annotations

import torch
from torch import nn

from karakuri.sim.task import ObsTerm


class ObsAssembler(nn.Module):
    """Concatenate ``(signal - offset) * scale`` for each term, in order.

    Args:
        terms: The terms to assemble (privileged ones included only if given).
        sizes: Signal name to its width k (signals are shaped (B, k)).
    """

    def __init__(self, terms: list[ObsTerm], sizes: dict[str, int]) -> None:
        super().__init__()
        self.terms = list(terms)
        self.signal_names = list(dict.fromkeys(t.signal for t in terms))
        missing = [s for s in self.signal_names if s not in sizes]
        if missing:
            raise ValueError(
                f"observation terms read signal {missing[0]!r}, which no one provides; "
                f"signals: {sorted(sizes)}"
            )
        for i, t in enumerate(self.terms):
            k = sizes[t.signal]
            self.register_buffer(f"offset_{i}", _per_element(t.offset, k, t.name, "offset"))
            self.register_buffer(f"scale_{i}", _per_element(t.scale, k, t.name, "scale"))
        self.size = sum(sizes[t.signal] for t in terms)

    def forward(self, signals: dict[str, torch.Tensor]) -> torch.Tensor:
        """Shape: (B, size)."""
        parts = []
        for i, t in enumerate(self.terms):
            x = signals[t.signal]
            parts.append((x - getattr(self, f"offset_{i}")) * getattr(self, f"scale_{i}"))
        return torch.cat(parts, dim=-1)


def _per_element(v: float | tuple[float, ...], k: int, term: str, what: str) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32).flatten()
    if t.numel() == 1:
        return t.expand(k).clone()
    if t.numel() != k:
        raise ValueError(
            f"observation term {term!r}: {what} has {t.numel()} values for a signal of width {k}"
        )
    return t
