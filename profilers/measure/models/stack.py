"""A small language model around the blocks: embedding, N blocks, LM head; its optimizer and one training step.

What the block lab's ``step`` mode times and the training lab trains (``blocks.py`` holds the blocks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ...catalog import PLACEMENTS
from .blocks import Block, BlockConfig, BlockError, Norm, component_range

Tensor = torch.Tensor


# ---- a small language model: embedding, N blocks, LM head ---------------------------------------------
@dataclass(frozen=True)
class StackConfig:
    """A small LM: ``block`` repeated ``depth`` times (its ``n_layers`` is set to ``depth``)."""

    block: BlockConfig
    depth: int = 6
    vocab: int = 256  # byte-level tokens
    max_seq: int = 512  # learned absolute positions (families without RoPE)

    def block_config(self) -> BlockConfig:
        return replace(self.block, n_layers=self.depth)


class LMStack(nn.Module):
    """Token embedding → blocks → final norm (placements whose stream is not normalized) → LM head.
    Peri-LN also normalizes the embedding output, as in Kim et al. 2025."""

    def __init__(self, cfg: StackConfig) -> None:
        super().__init__()
        bcfg = cfg.block_config()
        bcfg.check()
        if cfg.depth < 1:
            raise BlockError(f"depth must be at least 1, got {cfg.depth}")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, bcfg.hidden)
        self.pos = None if bcfg.info.rope else nn.Embedding(cfg.max_seq, bcfg.hidden)
        self.blocks = nn.ModuleList(Block(bcfg) for _ in range(cfg.depth))
        ncfg = bcfg.norm_config()
        has_final = PLACEMENTS[bcfg.placement].final_norm
        self.final_norm = Norm(bcfg.norm, bcfg.hidden, bcfg.impl, ncfg) if has_final else None
        self.embed_norm = Norm(bcfg.norm, bcfg.hidden, bcfg.impl, ncfg) if bcfg.placement == "peri_ln" else None
        self.head = nn.Linear(bcfg.hidden, cfg.vocab, bias=False)
        nn.init.xavier_normal_(self.head.weight)
        self.ranges = bcfg.ranges

    def forward(self, tokens: Tensor, block_max: list[Tensor] | None = None) -> Tensor:
        """Logits [batch, seq, vocab]; ``block_max`` (when given) collects each block's max |output|."""
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        if self.embed_norm is not None:
            with component_range(self.ranges, "norm"):
                x = self.embed_norm(x)
        for block in self.blocks:
            x = block(x)
            if block_max is not None:
                block_max.append(x.detach().abs().max())
        if self.final_norm is not None:
            with component_range(self.ranges, "norm"):
                x = self.final_norm(x)
        return self.head(x)

    def loss(self, tokens: Tensor, targets: Tensor, block_max: list[Tensor] | None = None) -> Tensor:
        logits = self.forward(tokens, block_max)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def build_stack(
    cfg: StackConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> LMStack:
    """A seeded small LM (raises BlockError naming the fix)."""
    cfg.block_config().check()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stack = LMStack(cfg)
    return stack.to(device=device, dtype=dtype)


def make_optimizer(
    stack: nn.Module, lr: float, weight_decay: float = 0.1, betas: Sequence[float] = (0.9, 0.98)
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norm gains, biases, LayerScale λ and embeddings' rows
    decayed would pull the norms towards zero)."""
    decay = [p for n, p in stack.named_parameters() if p.ndim >= 2 and "embed" not in n and "pos" not in n]
    rest = [p for n, p in stack.named_parameters() if not (p.ndim >= 2 and "embed" not in n and "pos" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(betas[0], betas[1]), foreach=True)


def train_step(
    stack: LMStack, opt: torch.optim.Optimizer, tokens: Tensor, targets: Tensor, clip_norm: float | None = None
) -> tuple[Tensor, Tensor]:
    """One AdamW step: forward, backward, optional clipping, update. Returns (loss, global grad norm before
    clipping) as tensors, so a timed loop need not synchronize."""
    opt.zero_grad(set_to_none=True)
    loss = stack.loss(tokens, targets)
    loss.backward()
    params = [p for p in stack.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, clip_norm if clip_norm is not None else math.inf, foreach=True)
    opt.step()
    return loss.detach(), norm.detach()


def blocks_of(stack: LMStack) -> Iterator[Block]:
    yield from stack.blocks  # type: ignore[misc]
