import pytest
import torch

from profilers.catalog import Config, reduced_elements, unsupported_reason
from profilers.measure.subjects.gate import classify, errors_vs_reference, upstream_grads
from profilers.measure.subjects.variants import VARIANTS, build, reference

CFG = Config(eps=1e-5, groups=4)


def _inputs(variant: str, dtype=torch.float32, tokens=16, hidden=64, grad=False):
    ins = VARIANTS[variant].make_inputs(tokens, hidden, dtype, torch.device("cpu"), 0, CFG)
    return [t.requires_grad_(grad) for t in ins]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("impl", ["eager", "native"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("seed", range(4))
def test_every_variant_matches_float64_reference(variant, impl, dtype, seed):
    """Outputs and gradients (random dy; output-correlated dy for scalar parameters), as the gate does."""
    if unsupported_reason(variant, impl, "cpu", 16, 64, CFG):
        pytest.skip("unsupported combination")
    ins = _inputs(variant, getattr(torch, dtype), grad=True)
    is_param = [t.numel() == 1 for t in ins]  # scalar parameters get the output-correlated dy
    fn = build(variant, impl, CFG)
    outs = fn(*ins)
    gen = torch.Generator().manual_seed(1000 + seed)  # not the inputs' stream: dy = x would cancel dx
    dys = [torch.randn(o.shape, generator=gen).to(o.dtype) for o in outs]
    dys_p = upstream_grads(outs, gen, getattr(torch, dtype))
    acts = [t for t, p in zip(ins, is_param) if not p]
    pars = [t for t, p in zip(ins, is_param) if p]
    got = [*outs, *torch.autograd.grad(outs, acts, dys)]
    if pars:
        got += torch.autograd.grad(fn(*ins), pars, dys_p)
    x64 = [t.detach().double().requires_grad_(True) for t in ins]
    ref = reference(variant, CFG)(*x64)
    a64 = [t for t, p in zip(x64, is_param) if not p]
    p64 = [t for t, p in zip(x64, is_param) if p]
    want = [*ref, *torch.autograd.grad(ref, a64, [d.double() for d in dys], retain_graph=True)]
    if p64:
        want += torch.autograd.grad(ref, p64, [d.double() for d in dys_p])
    errs = errors_vs_reference(got, want, [f"t{i}" for i in range(len(got))])
    assert classify(errs, dtype, reduced_elements(variant, "fwdbwd", 16, 64, CFG)).level == "pass", errs


def test_inputs_are_random_not_zeros():
    x, w, b = _inputs("layernorm")
    assert x.std() > 0.5 and w.std() > 0.01 and b.abs().sum() > 0


def test_batchnorm_normalizes_over_tokens_and_layernorm_over_hidden():
    x = _inputs("batchnorm")[0]
    ones, zeros = torch.ones(64), torch.zeros(64)
    bn = build("batchnorm", "native", CFG)(x, ones, zeros)[0]
    ln = build("layernorm", "native", CFG)(x, ones, zeros)[0]
    assert bn.mean(0).abs().max() < 1e-5
    assert ln.mean(1).abs().max() < 1e-5


def test_add_rmsnorm_returns_normed_and_new_residual():
    x, r, w = _inputs("add_rmsnorm")
    y, h = build("add_rmsnorm", "eager", CFG)(x, r, w)
    assert torch.equal(h, x + r)
    assert torch.allclose(y, build("rmsnorm", "native", CFG)(x + r, w)[0], atol=1e-5)


@pytest.mark.parametrize(
    ("variant", "impl", "device", "tokens", "hidden", "needle"),
    [
        ("dyt", "native", "cpu", 8, 64, "no fused DyT"),
        ("groupnorm", "native", "cpu", 8, 66, "divisible by groups"),
        ("batchnorm", "eager", "cpu", 1, 64, "at least 2 tokens"),
        ("rmsnorm", "liger", "cpu", 8, 64, "runs only on cuda"),
        ("batchnorm", "liger", "cuda", 8, 64, "no batchnorm kernel"),
    ],
)
def test_unsupported_combinations_have_reasons(variant, impl, device, tokens, hidden, needle):
    reason = unsupported_reason(variant, impl, device, tokens, hidden, CFG)
    assert reason and needle in reason


def test_supported_combination_has_no_reason():
    assert unsupported_reason("rmsnorm", "native", "cpu", 8, 64, CFG) is None


def test_gate_rejects_nan_and_large_errors():
    ref = [torch.ones(4, dtype=torch.float64)]

    def verdict(values, dtype, fp32=None):
        return classify(errors_vs_reference([values], ref, ["y"]), dtype, 64, fp32)

    nan = verdict(torch.tensor([1.0, float("nan"), 1, 1]), "float32")
    assert nan.level == "wrong" and "NaN or Inf" in nan.note
    off = verdict(torch.full((4,), 1.01), "float32")
    assert off.level == "wrong" and "differs" in off.note
    assert verdict(torch.full((4,), 1.01), "bfloat16").level == "pass"
    far = verdict(torch.full((4,), 1.5), "bfloat16")  # rel L2 0.5 > 0.25: wrong whatever fp32 says
    assert far.level == "wrong" and "far from" in far.note


def test_gate_tells_imprecise_rounding_from_a_logic_error():
    ref = [torch.ones(4, dtype=torch.float64)]
    errs = errors_vs_reference([torch.full((4,), 1.05)], ref, ["dbias"])  # 5%: past bf16, not far
    exact = errors_vs_reference([torch.ones(4)], ref, ["dbias"])
    imprecise = classify(errs, "bfloat16", 64, fp32_errors=lambda: exact)
    assert imprecise.level == "imprecise" and imprecise.timed
    assert "dbias" in imprecise.note and imprecise.multiple == pytest.approx(0.05 / 0.01600782, rel=1e-3)
    logic = classify(errs, "bfloat16", 64, fp32_errors=lambda: errs)  # as wrong in fp32: not rounding
    assert logic.level == "wrong" and not logic.timed and "logic error" in logic.note


def test_gate_flags_a_value_the_dtype_cannot_hold_and_still_fails_a_wrong_inf():
    """fp16 holds at most 65504: a gradient whose float64 reference is 8e5 rounds to +inf, which is the right
    answer in that dtype (imprecise, timed); an inf where the reference fits, or of the wrong sign, is wrong."""
    big = torch.tensor([8e5], dtype=torch.float64)
    exact32 = errors_vs_reference([torch.tensor([8e5])], [big], ["dalpha"])
    errs = errors_vs_reference([torch.tensor([float("inf")], dtype=torch.float16)], [big], ["dalpha"])
    assert errs.overflow and errs.overflow[0][0] == "dalpha" and errs.overflow[0][1] == pytest.approx(8e5)
    v = classify(errs, "float16", 64, fp32_errors=lambda: exact32)
    assert v.level == "imprecise" and v.timed and v.multiple is None
    assert "dalpha overflows float16" in v.note and "65504" in v.note and "correct in float32" in v.note
    wrong_sign = errors_vs_reference([torch.tensor([-float("inf")], dtype=torch.float16)], [big], ["dalpha"])
    assert classify(wrong_sign, "float16", 64, fp32_errors=lambda: exact32).level == "wrong"
    fits = errors_vs_reference([torch.tensor([float("inf")], dtype=torch.float16)], [big / 100], ["dalpha"])
    assert classify(fits, "float16", 64, fp32_errors=lambda: exact32).level == "wrong"
    # the rest of the tensors are still judged: an overflow beside a logic error is a logic error
    ref = [big, torch.ones(4, dtype=torch.float64)]
    got = [torch.tensor([float("inf")], dtype=torch.float16), torch.full((4,), 1.5, dtype=torch.float16)]
    assert classify(errors_vs_reference(got, ref, ["dalpha", "y"]), "float16", 64).level == "wrong"
    # and the same implementation wrong in float32 is a logic error, not the dtype's range
    assert classify(errs, "float16", 64, fp32_errors=lambda: wrong_sign).level == "wrong"


def test_block_error_combiners_keep_an_overflow():
    """A block's gate folds output and gradient errors together: the overflow must survive the fold."""
    from profilers.labs.blocks.measure import worst_errors
    from profilers.measure.models.blocks import grad_errors

    big, inf16 = torch.tensor([8e5], dtype=torch.float64), torch.tensor([float("inf")], dtype=torch.float16)
    grads = grad_errors([inf16, torch.ones(2)], [big, torch.ones(2, dtype=torch.float64)], ["dalpha", "dw"])
    assert grads.overflow and grads.overflow[0][0] == "dalpha"
    out = errors_vs_reference([torch.ones(2)], [torch.ones(2, dtype=torch.float64)], ["output"])
    assert worst_errors(out, grads).overflow == grads.overflow
    assert classify(worst_errors(out, grads), "float16", 64).level == "imprecise"
    # just under half an ulp past fp16's largest value rounds to 65504, not to infinity: not an overflow
    near = errors_vs_reference([inf16], [torch.tensor([65510.0], dtype=torch.float64)], ["y"])
    assert not near.overflow and classify(near, "float16", 64).level == "wrong"
