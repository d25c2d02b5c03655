import pytest

from profilers.spec import PRESETS, SpecError, SweepSpec, default_cpu_spec, default_gpu_spec, parse_shape


def test_parse_shape_accepts_common_spellings():
    assert parse_shape("4096x768") == (4096, 768)
    assert parse_shape(" 1X8 ") == (1, 8)
    assert parse_shape("2×3") == (2, 3)


@pytest.mark.parametrize("text", ["4096", "x768", "4096x", "axb", "1x2x3", ""])
def test_parse_shape_rejects_malformed(text):
    with pytest.raises(SpecError, match="malformed shape"):
        parse_shape(text)


@pytest.mark.parametrize("text", ["0x768", "4096x0", "-1x768"])
def test_parse_shape_rejects_non_positive(text):
    with pytest.raises(SpecError, match="must be positive"):
        parse_shape(text)


def test_spec_round_trips_through_json():
    spec = SweepSpec(
        variants=("rmsnorm", "layernorm"),
        impls=("native",),
        shapes=((8, 16), (32, 64)),
        dtypes=("bf16",),
        modes=("fwd", "fwdbwd"),
        threads=2,
        label="lab",
        preset="bert-base",
    )
    again = SweepSpec.from_json(spec.to_json())
    assert again == spec
    assert again.dtypes == ("bfloat16",)
    assert again.shapes == ((8, 16), (32, 64))


def test_points_are_the_cross_product_in_stable_order():
    spec = SweepSpec(variants=("rmsnorm", "dyt"), impls=("eager", "native"), shapes=((8, 16), (4, 8)))
    pts = spec.points()
    assert len(pts) == 2 * 2 * 2
    assert pts[0].shape == "8x16" and pts[-1].shape == "4x8"
    assert len(set(pts)) == len(pts)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"variants": ("layernorm", "nope")}, "unknown variant 'nope'"),
        ({"impls": ("fast",)}, "unknown implementation 'fast'"),
        ({"dtypes": ("int8",)}, "unknown dtype 'int8'"),
        ({"modes": ("train",)}, "unknown mode 'train'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"threads": 0}, "threads must be a whole number"),
        ({"budget_ms": 0}, "budget_ms must be"),
        ({"shapes": ()}, "no shapes"),
        ({"cuda_graph": True}, "--cuda-graph needs a CUDA device"),
        ({"preset": "gpt-5"}, "unknown preset"),
    ],
)
def test_bad_specs_name_the_problem(kw, message):
    base = {"variants": ("layernorm",), "impls": ("native",), "shapes": ((8, 16),)}
    base.update(kw)
    with pytest.raises(SpecError, match=message):
        SweepSpec(**base)


def test_from_json_rejects_unknown_fields_and_bad_json():
    with pytest.raises(SpecError, match="unknown sweep spec field"):
        SweepSpec.from_dict({"variants": ["rmsnorm"], "impls": ["native"], "shapes": [[1, 2]], "colour": "red"})
    with pytest.raises(SpecError, match="not valid JSON"):
        SweepSpec.from_json("{nope")


def test_presets_cover_the_models_users_ask_about():
    assert {"bert-base", "llama-3-8b", "llama-3-70b", "vit-b"} <= set(PRESETS)
    assert PRESETS["llama-3-8b"].hidden == 4096
    assert PRESETS["llama-3-70b"].hidden == 8192
    assert all(t > 0 for p in PRESETS.values() for t in p.tokens)


def test_default_sweeps_are_valid():
    cpu = default_cpu_spec()
    gpu = default_gpu_spec()
    assert cpu.device == "cpu" and cpu.points()
    assert gpu.device == "cuda:0" and (32768, 8192) in gpu.shapes and gpu.dtypes == ("bfloat16",)
