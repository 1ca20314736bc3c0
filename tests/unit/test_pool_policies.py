"""Warm-pool policies on hand-made traces, the trace format, and the oracle as a true lower bound."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.events import pool as ev
from services.pool.policies import Observation, make
from services.pool.policies import oracle
from services.pool.policies.model import BootModel
from services.pool.policies.simulate import simulate
from services.pool.policies.trace import NUMERIC_BASE, Job, TraceError, parse_csv

MON = NUMERIC_BASE  # Monday 00:00 UTC
H = 3600.0


def spec(kind, **params):
    windows = (ev.ScheduleWindow(),) if kind == "schedule" else ()
    return ev.PolicySpec(kind=kind, params=params, windows=windows)


def burst(start=MON + 10 * H, n=20, every=60.0, gpu=30.0):
    return [Job(arrival=start + k * every, gpu_s=gpu) for k in range(n)]


def weekly(weeks=3, hours=(9, 10, 11, 14, 15, 16), per_hour=4):
    return [Job(arrival=MON + w * 7 * 86400 + d * 86400 + h * H + k * (H / per_hour), gpu_s=40.0)
            for w in range(weeks) for d in range(5) for h in hours for k in range(per_hour)]


# --- decisions ------------------------------------------------------------------------

def test_fixed_keeps_n_and_seed_keeps_one_until_work_then_15_minutes():
    assert make(spec("fixed", n=2)).decide(Observation(now=MON)).keep == 2
    seed = make(spec("seed"))
    first = seed.decide(Observation(now=MON))
    assert first.keep == 1 and "until the first job" in first.reason
    seed.observe(MON, 30)
    later = seed.decide(Observation(now=MON + H))
    assert later.keep == 0 and later.idle_timeout_s == 900 and "15 min" in later.reason


def test_scale_to_zero_keeps_nothing_on_a_quiet_night():
    r = simulate([Job(arrival=MON + 20 * H, gpu_s=60), Job(arrival=MON + 30 * H, gpu_s=60)],
                 spec("reactive", idle_s=60), BootModel(failure_rate=0))
    assert r.max_instances == 1 and r.rentals == 2, "one rental per job, nothing kept over the night"
    # 60 s idle after the first job; billing stops when the last job ends
    assert r.by_state["idle"] * 3600 / 0.4 == pytest.approx(60, abs=1)
    assert r.cold_waits == 2


def test_a_burst_scales_up_for_the_backlog_then_waits_no_more():
    jobs = burst()
    r = simulate(jobs, spec("seed"), BootModel(failure_rate=0))
    assert 2 <= r.max_instances <= 7 and r.rentals == r.max_instances, "rented while the first booted, then no more"
    late = [w for j, w in zip(jobs, r.waits) if j.arrival > jobs[0].arrival + 400]
    assert late and max(late) == 0, "once the instances are up, nobody waits"


def test_histogram_learns_keep_alive_from_idle_gaps():
    policy = make(spec("histogram", tail=0.9))
    rng = random.Random(2)
    t = MON
    for _ in range(40):  # jobs 30 s long, idle gaps of 1-5 minutes
        policy.observe(t, 30.0)
        t += 30 + rng.uniform(60, 300)
    start, until = policy.windows(boot_s=240)
    assert start == 0 and 250 <= until <= 1.1 * 300 + 60 and until % 60 == 0  # whole minutes
    d = policy.decide(Observation(now=t + 100, last_activity=t))
    assert d.keep == 0 and d.idle_timeout_s == until, "each instance stays warm through the keep-alive window"
    assert "p90 of 39 idle gaps" in d.reason


def test_histogram_gaps_are_per_instance_when_jobs_overlap():
    policy = make(spec("histogram"))
    for k in range(12):  # two artists, each a 60 s job every 10 min, 5 s apart
        policy.observe(MON + k * 600, 60.0)
        policy.observe(MON + k * 600 + 5, 60.0)
    assert set(round(g) for g in policy.history.idle_gaps) == {535, 545}, "each instance idles ~9 min, not 5 s"


def test_histogram_lets_go_and_prewarms_when_the_next_job_is_far_but_regular():
    policy = make(spec("histogram", tail=0.9))
    for k in range(30):  # a 60 s job every 30 min, like clockwork
        policy.observe(MON + k * 1800, 60.0)
    start, until = policy.windows(boot_s=240)
    assert 1400 < start < 1600 and until > start
    end = MON + 29 * 1800 + 60
    assert policy.decide(Observation(now=end + 60, last_activity=end)).keep == 0
    warm = policy.decide(Observation(now=end + start + 10, last_activity=end))
    assert warm.keep == 1 and "pre-warmed 1" in warm.reason


def test_histogram_falls_back_without_enough_history():
    d = make(spec("histogram")).decide(Observation(now=MON))
    assert d.keep == 0 and "too few" in d.reason


def test_time_of_week_prewarms_ahead_of_the_usual_hours_and_not_at_night():
    policy = make(spec("time_of_week", threshold=0.5))
    for j in weekly(weeks=2):
        policy.observe(j.arrival, j.gpu_s)
    week3 = MON + 14 * 86400
    before_nine = policy.decide(Observation(now=week3 + 9 * H - 200, boot_s=240))
    assert before_nine.keep >= 1
    assert "expected 4.0 jobs in Mon 09:00-10:00" in before_nine.reason and "2 weeks" in before_nine.reason
    night = policy.decide(Observation(now=week3 + 2 * H, boot_s=240))
    assert night.keep == 0 and "quiet" in night.reason
    saturday = policy.decide(Observation(now=week3 + 5 * 86400 + 10 * H, boot_s=240))
    assert saturday.keep == 0


def test_time_of_week_on_a_weekly_pattern_waits_less_than_scale_to_zero_in_the_last_week():
    jobs = weekly(weeks=3, per_hour=2)
    model = BootModel(failure_rate=0)
    tow = simulate(jobs, spec("time_of_week", threshold=0.5), model)
    zero = simulate(jobs, spec("reactive", idle_s=60), model)
    last_week = len(jobs) // 3
    assert sum(tow.waits[-last_week:]) < sum(zero.waits[-last_week:]) / 4
    assert tow.decisions and any("prewarm" in reason for _, _, reason in tow.decisions)


def test_schedule_keeps_one_in_its_window_from_a_boot_early():
    policy = make(spec("schedule"))
    assert policy.decide(Observation(now=MON + 9 * H - 100, boot_s=240)).keep == 1
    assert policy.decide(Observation(now=MON + 20 * H, boot_s=240)).keep == 0
    assert policy.decide(Observation(now=MON + 5 * 86400 + 10 * H, boot_s=240)).keep == 0


def test_queue_depth_rents_only_when_the_expected_wait_passes_its_target():
    jobs = [Job(arrival=MON + k, gpu_s=30) for k in range(4)]  # 4 short jobs at once
    model = BootModel(failure_rate=0, boot_min_s=120, boot_max_s=121)
    patient = simulate(jobs, spec("queue_depth", target_s=600, idle_s=60), model)
    eager = simulate(jobs, spec("reactive", idle_s=60), model)
    assert eager.rentals == 4 and patient.rentals < eager.rentals


def test_unknown_parameters_are_refused():
    with pytest.raises(ValueError, match="no parameter"):
        make(spec("seed", n=3))


# --- traces ---------------------------------------------------------------------------

def test_traces_accept_iso_times_seconds_header_comments_and_any_order():
    jobs = parse_csv("arrival_time,gpu_seconds,checkpoint\n# a comment\n2026-11-02T09:15:00Z,30,sdxl\n"
                     "2026-11-02T09:00:00,12.5\n")
    assert [j.gpu_s for j in jobs] == [12.5, 30] and jobs[1].checkpoint == "sdxl"
    assert parse_csv("10,5\n0,5\n")[0].arrival == NUMERIC_BASE


@pytest.mark.parametrize("text, message", [
    ("0,abc\n", "line 1: gpu_seconds 'abc' is not a number"),
    ("0,10\nyesterday,3\n", "line 2: arrival_time 'yesterday' is neither"),
    ("0,-1\n", "gpu_seconds must be > 0"),
    ("0,10,a,b\n", "got 4 field(s)"),
    ("0,10\n2026-11-02T09:00:00Z,5\n", "mixes ISO times and seconds"),
    ("arrival_time,gpu_seconds\n", "no jobs"),
    ("0,nan\n", "gpu_seconds must be > 0"),
    ("1e308,5\n", "must be between 0 and"),
    ("0001-01-01T00:00:00Z,5\n", "out of range"),
    ("0,5\n40000000,5\n", "spans 463 days"),
])
def test_bad_rows_are_named(text, message):
    with pytest.raises(TraceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_csv(text)


# --- the oracle -----------------------------------------------------------------------

def test_zero_wait_oracle_bridges_short_gaps_and_boots_for_long_ones():
    b, dph = 120.0, 3600.0  # $1 per second, to read the figures as seconds
    short = [Job(arrival=0, gpu_s=60), Job(arrival=100, gpu_s=60)]  # gap 40 s < boot: stay
    assert oracle.zero_wait(short, b, dph) == pytest.approx(120 + 60 + 40 + 60)
    long = [Job(arrival=0, gpu_s=60), Job(arrival=1000, gpu_s=60)]  # gap 940 s: boot again
    assert oracle.zero_wait(long, b, dph) == pytest.approx(2 * (120 + 60))
    both = [Job(arrival=0, gpu_s=60), Job(arrival=0, gpu_s=60)]  # two at once: two instances
    assert oracle.zero_wait(both, b, dph) == pytest.approx(2 * (120 + 60))


jobs_strategy = st.lists(st.tuples(st.floats(0, 6 * 3600), st.floats(5, 900)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=jobs_strategy, kind=st.sampled_from(["seed", "fixed", "reactive", "queue_depth", "histogram",
                                                 "time_of_week", "schedule"]),
       failure=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 5))
def test_no_policy_beats_the_oracle(raw, kind, failure, seed):
    jobs = sorted((Job(arrival=MON + a, gpu_s=s) for a, s in raw), key=lambda j: j.arrival)
    model = BootModel(failure_rate=failure, seed=seed)
    r = simulate(jobs, spec(kind), model)
    bound = oracle.lower_bound(jobs, model.boot_min_s, model.dph, r.p95)
    assert r.total >= bound - 1e-9
    if r.p99 == 0:  # every job started on arrival: the exact zero-wait optimum is a bound too
        assert r.total >= oracle.zero_wait(jobs, model.boot_min_s, model.dph) - 1e-9
    assert oracle.lower_bound(jobs, model.boot_min_s, model.dph, 0.0, q=1.0) <= \
        oracle.zero_wait(jobs, model.boot_min_s, model.dph) + 1e-9


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.,-:TZe+ \n#xa")), max_size=80))
def test_any_text_is_a_trace_or_a_clear_trace_error(text):
    try:
        jobs = parse_csv(text)
    except TraceError as exc:
        assert "line" in str(exc) or "no jobs" in str(exc) or "spans" in str(exc)
        return
    r = simulate(jobs[:20], spec("seed"), BootModel(failure_rate=0.2))
    assert r.jobs == min(len(jobs), 20) and r.total >= 0
