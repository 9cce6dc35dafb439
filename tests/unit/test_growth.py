"""bench/growth.py: growth exponents recovered from costs whose law is known."""

import importlib.util
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("growth", os.path.join(ROOT, "bench", "growth.py"))
growth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(growth)


def _result(n: int, costs: dict) -> dict:
    """A pipeline_bench --json result at n ratings; each component's cost split over the two variants."""
    timings = {v: [{"component": c, "seconds": f(n) / 2} for c, f in costs.items()] for v in ("baseline", "timestamp")}
    return {"ratings": n, "configs": {"default": {"timings": timings, "wall_seconds": sum(f(n) for f in costs.values())}}}


def test_exponents_of_known_laws():
    laws = {"Fixed": lambda n: 5.0, "Linear": lambda n: 3e-5 * n, "Superlinear": lambda n: 1e-9 * n ** 1.5,
            "Instant": lambda n: 0.01 if n == 10**6 else 0.0}
    rows = {r["component"]: r for r in growth.growth_table([_result(n, laws) for n in (10**5, 10**7, 10**6)], "default")}
    assert rows["Fixed"]["exponent"] == pytest.approx(0.0, abs=1e-9)
    assert rows["Linear"]["exponent"] == pytest.approx(1.0)
    assert rows["Superlinear"]["exponent"] == pytest.approx(1.5)
    assert rows["Linear"]["seconds"] == pytest.approx([3.0, 30.0, 300.0])  # sorted by size
    assert rows["Superlinear"]["extrapolated"]["1B"] == pytest.approx(1e-9 * 1e9 ** 1.5)
    assert 0 < rows["total"]["exponent"] < 1.5
    assert rows["total"]["seconds"][0] == pytest.approx(5.0 + 3.0 + 1e-9 * 1e5 ** 1.5)
    assert "Instant" not in rows  # under a second at every size: in the total only
    assert rows["total"]["seconds"][1] == pytest.approx(5.0 + 30.0 + 1e-9 * 1e6 ** 1.5 + 0.01)


def test_only_the_components_every_run_has():
    laws = {"Transform": lambda n: 1e-5 * n, "RetrievalTrainer": lambda n: 1e-4 * n}
    partial = _result(10**7, {"Transform": laws["Transform"]})  # pipeline_bench --to Transform
    rows = {r["component"]: r for r in growth.growth_table([_result(10**5, laws), _result(10**6, laws), partial],
                                                          "default")}
    assert set(rows) == {"Transform", "total"}
    assert rows["total"]["seconds"] == pytest.approx([1.0, 10.0, 100.0])


def test_a_run_of_one_variant_restricts_every_size_to_that_variant():
    # pipeline_bench --to runs the baseline variant only: the Trainer of both variants must not be set beside one.
    laws = {"RetrievalTrainer": lambda n: 1e-4 * n}
    one_variant = _result(10**7, laws)
    del one_variant["configs"]["default"]["timings"]["timestamp"]
    rows = {r["component"]: r for r in growth.growth_table([_result(10**5, laws), _result(10**6, laws), one_variant],
                                                          "default")}
    assert rows["RetrievalTrainer"]["variants"] == ["baseline"]
    assert rows["RetrievalTrainer"]["seconds"] == pytest.approx([5.0, 50.0, 500.0])  # each size's baseline half
    assert rows["RetrievalTrainer"]["exponent"] == pytest.approx(1.0)


def test_one_size_is_refused(tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match="two sizes"):
        growth.fit_power_law([10**6], [3.0])
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"ratings": None, "configs": {}}))
    monkeypatch.setattr(sys, "argv", ["growth.py", str(path)])
    with pytest.raises(SystemExit):
        growth.main()
    assert "no rating count" in capsys.readouterr().err


def test_a_rerun_on_the_same_data_gives_the_components_it_ran():
    # pipeline_bench --synthetic N --to Transform,Baselines --output DIR, then --data (its data) --output DIR
    # --to Evaluator: the second run's data components are cached (near 0 s); its Trainer and Evaluator are new.
    laws = {"Transform": lambda n: 1e-5 * n, "RetrievalTrainer": lambda n: 1e-4 * n, "Evaluator": lambda n: 2e-5 * n}

    def one_variant(result, data):
        del result["configs"]["default"]["timings"]["timestamp"]
        return {**result, "data": data}

    data_run = one_variant(_result(10**7, {"Transform": laws["Transform"]}), "/d/10m")
    rerun = one_variant(_result(10**7, laws), "/d/10m")
    rerun["ratings"] = None  # --data, not --synthetic: no count of its own
    for t in rerun["configs"]["default"]["timings"]["baseline"]:
        if t["component"] == "Transform":
            t.update(seconds=0.07, state="cached")
    sizes = [_result(10**5, laws), _result(10**6, laws)]
    rows = {r["component"]: r for r in growth.growth_table([*sizes, rerun, data_run], "default")}
    assert rows["Transform"]["seconds"] == pytest.approx([0.5, 5.0, 50.0])  # the data run's, not the cached 0.07
    assert rows["RetrievalTrainer"]["seconds"] == pytest.approx([5.0, 50.0, 500.0])
    assert rows["Evaluator"]["exponent"] == pytest.approx(1.0)
    other = one_variant(_result(10**6, laws), "/d/10m")  # the same data directory, another count: refused
    with pytest.raises(ValueError, match="disagree on its rating count"):
        growth.merge_runs([data_run, other])
