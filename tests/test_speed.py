"""`safehpo speed`: the JSON it writes, one result per (algo, env, K), one-line errors for bad flags."""

import json
import math

import pytest

from conftest import TINY
from safehpo.cli import main

REQUIRED = {"machine", "torch", "threads", "device", "steps", "results"}
RESULT_KEYS = {"algo", "env", "k", "steps_per_s", "ms_per_update", "ms_per_step"}


def test_speed_writes_one_positive_result_per_algo_env_k(tmp_path, capsys):
    out = tmp_path / "tmp" / "speed.json"
    tiny = [a for item in TINY for a in ("--set", item)]
    code = main(["speed", "--steps", "20", "--warmup", "5", "--fill", "100", "--algos", "sac-lag,sac-hpo",
                 "--k", "1,2", "--envs", "halfcheetah-speed", "--device", "cpu", "--out", str(out), "--quiet", *tiny])
    assert code == 0
    doc = json.loads(out.read_text())
    assert REQUIRED <= set(doc)
    assert {"cpu", "cores", "platform"} <= set(doc["machine"])
    assert doc["threads"] == 1 and doc["steps"] == 20 and doc["device"] == "cpu"
    got = [(r["algo"], r["env"], r["k"]) for r in doc["results"]]
    assert got == [("sac-lag", "halfcheetah-speed", 0), ("sac-hpo", "halfcheetah-speed", 1),
                   ("sac-hpo", "halfcheetah-speed", 2)]
    for r in doc["results"]:
        assert RESULT_KEYS <= set(r)
        for key in ("steps_per_s", "ms_per_update", "ms_per_step"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["algo"], key, r[key])
        # the update is part of the step, and the rate is the step time's inverse
        assert r["ms_per_update"] < r["ms_per_step"]
        assert r["ms_per_step"] == pytest.approx(1000.0 / r["steps_per_s"])
    table = capsys.readouterr().out
    assert "sac-hpo" in table and "ms/update" in table
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize("flags, names", [
    (["--algos", "sac-lag,nope"], "--algos"),
    (["--envs", "no-such-env"], "--envs"),
    (["--k", "-1"], "--k"),
    (["--k", "x"], "--k"),
    (["--steps", "0"], "--steps"),
    (["--steps", "-5"], "--steps"),
    (["--warmup", "-1"], "--warmup"),
    (["--threads", "0"], "--threads"),
    (["--device", "tpu"], "--device"),
    (["--set", "hidden=0"], "hidden"),
])
def test_bad_flags_exit_2_with_one_line(flags, names, tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["speed", "--steps", "5", "--quiet", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and names in err, err
    assert not out.exists()
