"""Generate the three synthetic demand traces bench/policy.py replays (fixed seed: same files every run).

    python -m bench.traces.generate    # rewrites bench/traces/{solo,studio,batch}.csv
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

from services.pool.policies.trace import Job, to_csv

HERE = Path(__file__).parent
START = datetime(2026, 10, 5, tzinfo=timezone.utc).timestamp()  # a Monday
DAY = 86400.0


def solo(rng: random.Random, weeks: int = 3) -> list[Job]:
    """A solo artist: on most days one to three bursty sessions at irregular hours."""
    jobs = []
    for day in range(weeks * 7):
        if rng.random() < 0.3:
            continue
        for _ in range(rng.randint(1, 3)):
            t = START + day * DAY + rng.uniform(10, 23) * 3600
            end = t + rng.uniform(20, 75) * 60
            while t < end:
                jobs.append(Job(arrival=t, gpu_s=rng.uniform(15, 60)))
                t += rng.expovariate(1 / 90.0) + 20
    return jobs


def studio(rng: random.Random, weeks: int = 3, artists: int = 6) -> list[Job]:
    """A studio: weekdays 09-18 with a lunch dip, several artists at once; a little weekend work."""
    jobs = []
    for day in range(weeks * 7):
        weekend = day % 7 >= 5
        people = rng.randint(0, 1) if weekend else artists - rng.randint(0, 2)
        for _ in range(people):
            t = START + day * DAY + rng.uniform(8.75, 9.75) * 3600
            leave = START + day * DAY + rng.uniform(17.0, 18.5) * 3600
            lunch = START + day * DAY + rng.uniform(12.25, 12.75) * 3600
            while t < leave:
                if lunch <= t < lunch + 3600:
                    t = lunch + 3600 + rng.uniform(0, 600)
                    continue
                jobs.append(Job(arrival=t, gpu_s=rng.uniform(20, 90)))
                t += rng.expovariate(1 / 300.0) + 30
    return jobs


def batch(rng: random.Random, weeks: int = 4) -> list[Job]:
    """Irregular overnight batch runs: some nights, hundreds of jobs queued at once."""
    jobs = []
    for day in range(weeks * 7):
        if rng.random() < 0.45:
            continue
        t = START + day * DAY + rng.uniform(21, 27) * 3600
        for _ in range(rng.randint(50, 300)):
            jobs.append(Job(arrival=t, gpu_s=rng.uniform(30, 120)))
            t += rng.uniform(0, 20)
    return jobs


def main() -> None:
    """Write the three traces."""
    for name, make in (("solo", solo), ("studio", studio), ("batch", batch)):
        jobs = sorted(make(random.Random(f"stoker-{name}")), key=lambda j: j.arrival)
        (HERE / f"{name}.csv").write_text(to_csv(jobs), encoding="utf-8")
        print(f"{name}: {len(jobs)} jobs")


if __name__ == "__main__":
    main()
