"""Rules of the architecture, enforced: where torch may be imported, and one catalogue of names."""

import json
import subprocess
import sys
import textwrap

from conftest import ROOT


def may_load_torch(name: str) -> bool:
    """Only measuring code loads torch at import: the engine (``profilers.measure``) and a lab's ``measure*``."""
    parts = name.split(".")
    return parts[:2] == ["profilers", "measure"] or (
        parts[:2] == ["profilers", "labs"] and len(parts) == 4 and parts[3].startswith("measure")
    )


def all_modules() -> list[str]:
    import pkgutil

    import profilers

    return sorted(
        m.name for m in pkgutil.walk_packages(profilers.__path__, "profilers.") if m.name != "profilers.__main__"
    )


TORCH_FREE_MODULES = [m for m in all_modules() if not may_load_torch(m)]
PAGES = sorted(p.name for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))


def test_store_analysis_report_and_every_page_run_without_torch(tmp_path):
    """Import the light modules and render app.py and every page in a fresh interpreter: torch never loads."""
    script = textwrap.dedent(
        f"""
        import importlib, json, os, sys
        os.environ["NORMSCOPE_DB"] = {str(tmp_path / "empty.db")!r}
        os.environ["NORMSCOPE_REFERENCE_DIR"] = {str(tmp_path / "no-reference")!r}
        after_imports = None
        for name in {TORCH_FREE_MODULES!r}:
            importlib.import_module(name)
            if after_imports is None and "torch" in sys.modules:
                after_imports = name
        from streamlit.testing.v1 import AppTest
        errors = {{}}
        for page in ["app.py"] + ["pages/" + p for p in {PAGES!r}]:
            at = AppTest.from_file(page, default_timeout=60).run()
            if at.exception:
                errors[page] = str(at.exception[0].message)
            elif not (at.title or at.info):  # a script that did not compile renders nothing and raises nothing
                errors[page] = "rendered nothing"
        print(json.dumps({{"after_imports": after_imports, "after_pages": "torch" in sys.modules, "errors": errors}}))
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["after_imports"] is None, f"{result['after_imports']} loads torch: only measuring modules may"
    assert result["after_pages"] is False, "a page imports torch in the dashboard's process"


def test_measuring_registry_and_catalogue_agree():
    from profilers import catalog
    from profilers.measure.subjects import variants

    assert list(variants.VARIANTS) == list(catalog.VARIANTS)
    for name, formulas in variants.VARIANTS.items():
        info = catalog.VARIANTS[name]
        assert formulas.info is info
        assert (formulas.native is not None) == info.has_native, name
        assert set(info.param_inputs) <= set(info.inputs)
    cfg = catalog.Config()
    for impl in catalog.IMPLS:  # build knows every implementation the catalogue names
        for name in catalog.VARIANTS:
            if catalog.unsupported_reason(name, impl, "cuda" if impl == "liger" else "cpu", 8, 64, cfg) is None:
                assert callable(variants.build(name, impl, cfg, compiler=lambda f: f))


def test_spec_names_come_from_the_catalogue():
    from profilers import catalog, spec

    assert tuple(catalog.VARIANTS) == spec.VARIANTS
    assert tuple(catalog.KERNEL_IMPLS) == spec.IMPLS and set(catalog.IMPLS) - set(spec.IMPLS) == {"own"}
    assert tuple(catalog.MODES) == spec.MODES
    assert tuple(catalog.DTYPES) == spec.DTYPES


def test_the_torch_rule_is_a_pattern_that_covers_every_module():
    """Every module is either measuring code (by its place) or checked torch-free above; the pattern is not empty."""
    modules = all_modules()
    measuring = [m for m in modules if may_load_torch(m)]
    assert "profilers.measure.sweep.runner" in measuring and "profilers.labs.training.measure" in measuring
    assert "profilers.labs.drift.measure_demo" in measuring
    assert "profilers.labs.training.analysis" in TORCH_FREE_MODULES and "profilers.spec" in TORCH_FREE_MODULES
    assert len(measuring) + len(TORCH_FREE_MODULES) == len(modules)


def test_the_engine_stays_in_small_files_and_small_folders():
    """``profilers/measure`` is the core every lab uses: no file over 450 lines, no folder over 8 modules."""
    root = ROOT / "profilers" / "measure"
    long = {str(f.relative_to(ROOT)): n for f in root.rglob("*.py") if (n := len(f.read_text().splitlines())) > 450}
    assert not long, long
    for folder in [root, *[d for d in root.rglob("*") if d.is_dir() and d.name != "__pycache__"]]:
        modules = [f for f in folder.glob("*.py") if f.name != "__init__.py"]
        assert len(modules) <= 8, (str(folder.relative_to(ROOT)), len(modules))


def test_a_labs_init_is_empty_so_its_analysis_never_loads_its_measuring_code():
    from profilers import registry

    for lab in registry.LABS:
        init = ROOT / "profilers" / "labs" / lab.kind / "__init__.py"
        if init.exists():
            assert init.read_text().strip() == "", init
