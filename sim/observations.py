"""Observation assembly from named signals; the same module runs in sim and in the policy file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from karakuri.sim.terms import ObsTerm, per_element


def sized_terms(terms: Sequence[ObsTerm], sizes: Mapping[str, int]) -> list[ObsTerm]:
    """``terms`` with each size filled from the width of the signal it reads.

    Raises:
        ValueError: a term reads a signal no one provides, or disagrees on its width.
    """
    missing = [t.signal for t in terms if t.signal not in sizes]
    if missing:
        raise ValueError(f"observation terms read signal {missing[0]!r}, which no one "
                         f"provides; signals: {sorted(sizes)}")
    return [t.sized(sizes[t.signal]) for t in terms]


class ObsAssembler(nn.Module):
    """Concatenate ``(signal - offset) * scale`` for each term, in order.

    Args:
        terms: The terms to assemble (privileged ones included only if given).
        sizes: Signal name to its width k (signals are shaped (B, k)).
    """

    def __init__(self, terms: Sequence[ObsTerm], sizes: Mapping[str, int]) -> None:
        super().__init__()
        self.terms = sized_terms(terms, sizes)
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate observation term names {names}")
        self.signal_names = list(dict.fromkeys(t.signal for t in self.terms))
        self.signal_sizes = {s: int(sizes[s]) for s in self.signal_names}
        self.size = sum(t.size or 0 for t in self.terms)
        offset = [per_element(t.offset, t.size or 0) for t in self.terms]
        scale = [per_element(t.scale, t.size or 0) for t in self.terms]
        self.offset64 = np.concatenate(offset) if offset else np.zeros(0)
        self.scale64 = np.concatenate(scale) if scale else np.zeros(0)
        self.register_buffer("offset", torch.as_tensor(self.offset64, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(self.scale64, dtype=torch.float32))

    def concat(self, signals: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The raw signals of the terms side by side, before offset and scale. (B, size)."""
        parts = [signals[t.signal] for t in self.terms]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, signals: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(concat - offset) * scale``. Shape: (B, size)."""
        return (self.concat(signals) - self.offset) * self.scale

    def layout(self) -> str:
        """``"name[start:stop] ..."``: where each term sits in the observation."""
        out, start = [], 0
        for t in self.terms:
            out.append(f"{t.name}[{start}:{start + (t.size or 0)}]")
            start += t.size or 0
        return " ".join(out)
