"""`stoker simulate --trace FILE.csv`: any trace in the documented format; clear errors for bad ones."""

import json

import pytest

from libs.cli.main import main

TRACE = "arrival_time,gpu_seconds,checkpoint\n2026-11-02T09:00:00Z,40,sdxl\n2026-11-02T09:01:00Z,30\n" \
        "2026-11-02T11:30:00Z,60\n"


def test_a_trace_gives_a_table_per_policy_the_oracle_and_a_chart(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE)
    chart = tmp_path / "c.png"
    rc = main(["simulate", "--trace", str(trace), "--policy", "seed", "--policy", "reactive:idle_s=60",
               "--policy", "adaptive:tail=0.99", "--target-p95", "1000", "--chart", str(chart)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "seed" in out and "reactive(idle=60 s)" in out and "adaptive(" in out
    assert "oracle (perfect foresight, zero wait)" in out and "target p95 <= 1000 s:" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_output(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("0,10\n100,10\n")
    assert main(["simulate", "--trace", str(trace), "--policy", "fixed:n=1", "--json", "--boot-min", "60",
                 "--boot-max", "60", "--failure-rate", "0", "--dph", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    [row] = out["rows"]
    assert row["policy"] == "fixed(n=1)" and row["jobs"] == 2 and row["max_instances"] == 1
    # boot 60 s, job 10 s, the 90 s gap costs a new 60 s boot rather than 90 s idle, job 10 s
    assert out["oracle_zero_wait"] == pytest.approx((60 + 10 + 60 + 10) / 3600, abs=1e-6)
    assert row["p99"] > 0 and row["total"] >= row["oracle_at_p95"]  # it waited, so only the p95 bound applies


@pytest.mark.parametrize("content, args, message", [
    ("0,10\nnot-a-time,5\n", [], "line 2: arrival_time 'not-a-time'"),
    ("", [], "no jobs"),
    ("0,10\n", ["--policy", "magic"], "unknown policy kind 'magic'"),
    ("0,10\n", ["--policy", "seed:n=1"], "no parameter"),
    ("0,10\n", ["--boot-min", "500", "--boot-max", "100"], "boot-min <= boot-max"),
])
def test_bad_input_is_a_clear_error_and_exit_code_2(tmp_path, capsys, content, args, message):
    trace = tmp_path / "t.csv"
    trace.write_text(content)
    assert main(["simulate", "--trace", str(trace), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["simulate", "--trace", str(tmp_path / "nope.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
