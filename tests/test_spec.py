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
        ({"device": "cuda", "cuda_launch": "later"}, "unknown CUDA launch 'later': use one of queued, direct"),
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


def test_cold_cuda_calls_are_queued_unless_asked_to_be_timed_as_launched():
    base = {"variants": ("layernorm",), "impls": ("native",), "shapes": ((8, 16),), "device": "cuda"}
    assert SweepSpec(**base).timing_method() == "cuda_event_flush_queued"
    assert SweepSpec(**base, cuda_launch="direct").timing_method() == "cuda_event_flush"
    assert SweepSpec(**base, cache_state="warm").timing_method() == "cuda_event_queued"
    assert SweepSpec.from_dict({**base, "shapes": [[8, 16]], "cuda_launch": "direct"}).cuda_launch == "direct"


def test_the_timer_of_a_cuda_run_is_read_from_the_run_and_older_runs_timed_calls_as_launched():
    from profilers.analysis.method import differences, method_of

    old = {"spec": {"device": "cuda", "cache_state": "cold"}, "machine": {}}
    new = {"spec": {"device": "cuda", "cache_state": "cold"}, "machine": {"timing_method": "cuda_event_flush_queued"}}
    assert method_of(old)["timer"] == "cuda_event_flush" and method_of(new)["timer"] == "cuda_event_flush_queued"
    assert method_of(new)["flush"] == "zero"
    assert "timer cuda_event_flush_queued vs cuda_event_flush" in differences(new, old)
