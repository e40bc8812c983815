"""MOSA projector: Whisper encoder frames → LM embeddings, 4× shorter.

Two stride-2 convolutions downsample time; a router on the full-rate frames weighs a dense mixture
of small Linear→ReLU→Linear experts; RMSNorm puts the result on the LM's embedding scale.
Parameter names match the published checkpoint (`projector.conv.0.weight`, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4  # two stride-2 convolutions
ROUTER_HIDDEN = 512
NORM_EPS = 1e-6


class Expert(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class RMSNorm(nn.Module):
    """LlamaRMSNorm: normalise in float32, scale in the input's dtype."""

    def __init__(self, dim: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class MOSAProjector(nn.Module):
    def __init__(
        self,
        encoder_dim: int,
        llm_dim: int,
        hidden_dim: int = 4096,
        num_experts: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.conv = nn.Sequential(
            nn.Conv1d(encoder_dim, llm_dim, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(llm_dim, llm_dim, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.router = nn.Sequential(
            nn.Linear(encoder_dim, ROUTER_HIDDEN), nn.ReLU(), nn.Linear(ROUTER_HIDDEN, num_experts)
        )
        self.experts = nn.ModuleList(Expert(llm_dim, hidden_dim, dropout) for _ in range(num_experts))
        self.ln_post = RMSNorm(llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, frames, encoder_dim] → [batch, ceil(frames / 4), llm_dim]."""
        x = pad_to_stride(x)
        hidden = self.conv(x.transpose(1, 2)).transpose(1, 2)
        weights = self._route(x)
        mixed = sum(weights[..., i : i + 1] * expert(hidden) for i, expert in enumerate(self.experts))
        return self.ln_post(mixed)

    def routing_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax expert weights per output frame: [batch, ceil(frames / 4), num_experts]."""
        return self._route(pad_to_stride(x))

    def _route(self, x: torch.Tensor) -> torch.Tensor:
        # the router sees full-rate frames; its logits are averaged over each output frame's 4 inputs
        logits = self.router(x).unflatten(1, (-1, STRIDE)).mean(dim=2)
        return logits.softmax(dim=-1)


def pad_to_stride(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 0, -x.shape[1] % STRIDE))


def init_projector(projector: MOSAProjector, std: float = 0.02) -> None:
    """The reference's initialisation: normal weights, zero biases, unit norm."""
    for module in projector.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
    nn.init.ones_(projector.ln_post.weight)
