"""Rules of the architecture, enforced: where torch may be imported, and one catalogue of names."""

import json
import subprocess
import sys
import textwrap

from conftest import ROOT

TORCH_FREE_MODULES = [
    "profilers.catalog",
    "profilers.spec",
    "profilers.cli",
    "profilers.jobs",
    "profilers.store",
    "profilers.store.exchange",
    "profilers.store.reference",
    "profilers.store.schema",
    "profilers.analysis.noise",
    "profilers.analysis.recommend",
    "profilers.analysis.compare",
    "profilers.analysis.roofline",
    "profilers.analysis.footprint",
    "profilers.report.labels",
    "profilers.report.plots",
    "profilers.report.document",
    "profilers.report.text",
    "profilers.sensors.nvml",
    "profilers.sensors.host",
    "profilers.sensors.sampler",
    "profilers.sensors.live",
    "profilers.spec.numerics",
    "profilers.spec.drift",
    "profilers.analysis.numerics",
    "profilers.analysis.drift",
    "profilers.report.plots_numerics",
    "profilers.report.plots_drift",
    "profilers.report.section_numerics",
    "profilers.report.section_drift",
    "profilers.commands.numerics",
    "profilers.commands.drift",
    "profilers.spec.training",
    "profilers.analysis.stability",
    "profilers.report.plots_stability",
    "profilers.report.section_training",
    "profilers.commands.train",
    "profilers.spec.blocks",
    "profilers.analysis.blocks",
    "profilers.report.section_blocks",
    "profilers.commands.blocks",
]
PAGES = sorted(p.name for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))


def test_store_analysis_report_and_every_page_run_without_torch(tmp_path):
    """Import the light modules and render app.py and every page in a fresh interpreter: torch never loads."""
    script = textwrap.dedent(
        f"""
        import importlib, json, os, sys
        os.environ["NORMSCOPE_DB"] = {str(tmp_path / "empty.db")!r}
        os.environ["NORMSCOPE_REFERENCE_DIR"] = {str(tmp_path / "no-reference")!r}
        for name in {TORCH_FREE_MODULES!r}:
            importlib.import_module(name)
        after_imports = "torch" in sys.modules
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
    assert result["after_imports"] is False, "a store/analysis/report module imports torch"
    assert result["after_pages"] is False, "a page imports torch in the dashboard's process"


def test_measuring_registry_and_catalogue_agree():
    from profilers import catalog
    from profilers.measure import variants

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
    assert tuple(catalog.IMPLS) == spec.IMPLS
    assert tuple(catalog.MODES) == spec.MODES
    assert tuple(catalog.DTYPES) == spec.DTYPES
