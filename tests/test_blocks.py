"""The block builder: blocks against float64, placements where they differ, DeepNorm and LayerScale constants,
profiler ranges, presets, and the small LM stack's training step."""

import math

import pytest
import torch
from torch.profiler import profile

from profilers import catalog
from profilers.measure.models import blocks as B
from profilers.measure.models import stack as S

# fp32 block vs its float64 copy: one block's worth of rounding (measured ≤ 1e-5 relative); an error in the
# math (a wrong eps, a missing residual) is orders of magnitude larger
OUT_TOL = (1e-5, 1e-5)  # (max rel, rel L2)
GRAD_TOL = (1e-4, 5e-5)

CASES = [
    (family, norm, placement)
    for family in ("decoder", "encoder")
    for placement in catalog.PLACEMENTS
    for norm in ("layernorm", "rmsnorm", "dyt", "add_rmsnorm")
] + [("decoder", "groupnorm", "pre_ln"), ("encoder", "batchnorm", "pre_ln")]


def small(family: str, norm: str, placement: str, **kw) -> B.BlockConfig:
    base = dict(
        family=family,
        norm=norm,
        placement=placement,
        impl="native" if catalog.VARIANTS[norm].has_native else "eager",
        hidden=32,
        heads=4,
        kv_heads=2 if family == "decoder" else None,
        groups=4,
        n_layers=6,
    )
    base.update(kw)
    return B.BlockConfig(**base)


@pytest.mark.parametrize(("family", "norm", "placement"), CASES)
def test_block_output_and_gradients_match_float64(family, norm, placement):
    cfg = small(family, norm, placement)
    block = B.build_block(cfg, seed=1)
    check = B.check_against_float64(block, B.block_input(cfg, 2, 8, seed=2))
    assert check.output.max_rel < OUT_TOL[0] and check.output.rel_l2 < OUT_TOL[1], check.output
    assert check.grads is not None
    assert check.grads.max_rel < GRAD_TOL[0] and check.grads.rel_l2 < GRAD_TOL[1], check.grads


def test_eager_and_native_blocks_agree_and_a_planted_error_is_caught(monkeypatch):
    native = B.build_block(small("decoder", "layernorm", "pre_ln"), seed=3)
    eager = B.build_block(small("decoder", "layernorm", "pre_ln", impl="eager"), seed=3)
    x = B.block_input(native.cfg, 2, 8, seed=4)
    torch.testing.assert_close(native(x), eager(x), rtol=1e-5, atol=1e-5)

    real = B.Norm._formula

    def wrong_eps(self, variant):  # the timed norm uses eps 0.1, the float64 reference does not
        fn = real(self, variant)
        if self.impl == "reference":
            return fn
        return lambda *args, cfg: fn(*args, cfg=catalog.Config(eps=0.1))

    monkeypatch.setattr(B.Norm, "_formula", wrong_eps)
    check = B.check_against_float64(native, x)
    assert check.output.max_rel > 1e-3


def test_pre_and_post_ln_differ_exactly_where_the_norm_sits():
    """Same weights, placement swapped: Pre-LN keeps an identity residual path around each sublayer; Post-LN
    normalizes the sum. Zeroed sublayer outputs leave only the residual path: identity for Pre-LN (and
    Peri-LN, LayerScale), two stacked norms for Post-LN, α-scaled norms for DeepNorm."""
    pre = B.build_block(small("decoder", "rmsnorm", "pre_ln"), seed=5)
    post = B.build_block(small("decoder", "rmsnorm", "post_ln"), seed=5)
    assert {k: v for k, v in pre.state_dict().items()}.keys() == post.state_dict().keys()
    for k, v in pre.state_dict().items():
        assert torch.equal(v, post.state_dict()[k]), k
    x = B.block_input(pre.cfg, 2, 8, seed=6)
    with torch.no_grad():
        h = x + pre.attn(pre.norm1(x))
        assert torch.equal(pre(x), h + pre.mlp(pre.norm2(h)))
        h = post.norm1(x + post.attn(x))
        assert torch.equal(post(x), post.norm2(h + post.mlp(h)))
        assert not torch.allclose(pre(x), post(x))

        for placement in catalog.PLACEMENTS:
            b = B.build_block(small("decoder", "rmsnorm", placement), seed=5)
            b.attn.o.weight.zero_()
            b.mlp.down.weight.zero_()
            y = b(x)
            if placement in ("pre_ln", "pre_ln_layerscale", "peri_ln"):
                assert torch.equal(y, x), placement
            elif placement == "post_ln":
                torch.testing.assert_close(y, b.norm2(b.norm1(x)), rtol=0, atol=0)
            else:
                a = catalog.deepnorm_constants(6)[0]
                torch.testing.assert_close(y, b.norm2(a * b.norm1(a * x)), rtol=1e-6, atol=1e-6)


def test_deepnorm_alpha_beta_follow_the_paper_for_n_layers():
    # DeepNet (Wang et al. 2022), decoder-only: α = (2N)^¼, β = (8N)^-¼; values worked by hand
    for n, alpha, beta in ((1, 1.189207, 0.594604), (6, 1.861210, 0.379918), (12, 2.213364, 0.319472)):
        a, b = catalog.deepnorm_constants(n)
        assert a == pytest.approx(alpha, rel=1e-5) and b == pytest.approx(beta, rel=1e-5)
    with pytest.raises(ValueError):
        catalog.deepnorm_constants(0)
    # a built block uses them: α on the residual, β as the Xavier gain of v, o and the FFN (q, k keep gain 1)
    cfg = small("decoder", "layernorm", "deepnorm", hidden=256, heads=4, kv_heads=4, n_layers=12)
    block = B.build_block(cfg, seed=0)
    a, b = catalog.deepnorm_constants(12)
    assert block.alpha == a

    def gain(w):
        fan_out, fan_in = w.shape
        return w.std().item() / math.sqrt(2.0 / (fan_in + fan_out))

    for w in (block.attn.v.weight, block.attn.o.weight, block.mlp.down.weight, block.mlp.up.weight):
        assert gain(w) == pytest.approx(b, rel=0.05)
    assert gain(block.attn.q.weight) == pytest.approx(1.0, rel=0.05)


def test_layerscale_initial_scale_follows_cait_by_depth():
    assert [catalog.layerscale_init(d) for d in (1, 12, 18, 19, 24, 25, 36)] == [0.1, 0.1, 0.1, 1e-5, 1e-5, 1e-6, 1e-6]
    for depth, lam in ((12, 0.1), (24, 1e-5), (48, 1e-6)):
        block = B.build_block(small("encoder", "layernorm", "pre_ln_layerscale", n_layers=depth))
        assert torch.all(block.scale1 == torch.tensor(lam)) and torch.all(block.scale2 == torch.tensor(lam))
    stack = S.build_stack(S.StackConfig(small("decoder", "layernorm", "pre_ln_layerscale"), depth=20))
    assert all(torch.all(b.scale1 == torch.tensor(1e-5)) for b in stack.blocks)


def test_record_function_ranges_name_the_components():
    cfg = small("decoder", "rmsnorm", "pre_ln_layerscale")
    block = B.build_block(cfg)
    x = B.block_input(cfg, 2, 8).requires_grad_()
    with profile() as prof:
        block(x).sum().backward()
    names = {e.name for e in prof.events()}
    assert set(catalog.BLOCK_COMPONENTS) <= names
    quiet = B.build_block(small("decoder", "rmsnorm", "pre_ln", ranges=False))
    with profile() as prof:
        quiet(x)
    assert not set(catalog.BLOCK_COMPONENTS) & {e.name for e in prof.events()}


def test_presets_give_real_block_shapes_and_bad_blocks_are_refused():
    llama = B.block_config_from_preset("llama-3-8b", norm="rmsnorm")
    assert (llama.family, llama.hidden, llama.heads, llama.n_kv_heads, llama.ffn_size, llama.n_layers) == (
        "decoder",
        4096,
        32,
        8,
        14336,
        32,
    )
    big = B.block_config_from_preset("llama-3-70b")
    assert (big.hidden, big.heads, big.n_kv_heads, big.ffn_size) == (8192, 64, 8, 28672)
    for name in ("bert-base", "vit-b"):
        enc = B.block_config_from_preset(name)
        assert (enc.family, enc.hidden, enc.heads, enc.ffn_size) == ("encoder", 768, 12, 3072)
    with pytest.raises(B.BlockError, match="eager"):
        small("decoder", "dyt", "pre_ln", impl="native").check()
    with pytest.raises(B.BlockError, match="causal"):
        small("decoder", "batchnorm", "pre_ln").check()
    with pytest.raises(B.BlockError, match="pre_ln_layerscale"):
        small("decoder", "layerscale", "pre_ln").check()
    with pytest.raises(B.BlockError, match="unknown model preset"):
        B.block_config_from_preset("gpt-5")


def test_stack_matches_float64_and_its_training_step_learns():
    cfg = S.StackConfig(small("decoder", "add_rmsnorm", "peri_ln"), depth=2, vocab=64)
    stack = S.build_stack(cfg, seed=0)
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    check = B.check_against_float64(stack, tokens)
    assert check.output.max_rel < OUT_TOL[0] and check.grads is not None and check.grads.max_rel < GRAD_TOL[0]
    opt = S.make_optimizer(stack, 3e-3)
    targets = torch.roll(tokens, -1, dims=1)
    first, norm = S.train_step(stack, opt, tokens, targets)
    assert math.isfinite(float(norm)) and float(norm) > 0
    for _ in range(20):
        last, _ = S.train_step(stack, opt, tokens, targets)
    assert float(last) < float(first) - 0.5
