"""Temperature scaling (Guo et al., 2017), fitted on the validation split only."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 that minimises validation NLL of softmax(logits / T)."""
    z = torch.from_numpy(logits).double()
    target = torch.from_numpy(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T: keeps T positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / T): what calibration and TTA choices compare."""
    return float(F.cross_entropy(torch.from_numpy(logits).double() / temperature, torch.from_numpy(y)))


def p_fake(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double() / temperature, 1)[:, 1].numpy()
