"""How many instances to rent for waiting jobs (pure): the generation service's rule, or a policy's
drain rule. The simulator and the live pool's prewarm command both use it."""

from __future__ import annotations

import math


def rent_for_queue(*, waiting: int, live: int, coming: int, max_size: int, mean_gpu_s: float,
                   queue_wait_s: float) -> int:
    """Instances to rent now for ``waiting`` jobs.

    ``queue_wait_s`` 0: one per waiting job not covered by an instance coming or free (the generation
    service's autoscale). Otherwise only what drains the queue within ``queue_wait_s`` on all the
    live instances (booting ones included).
    """
    want = max(0, min(waiting - coming, max_size - live))
    if want and queue_wait_s > 0 and live:
        needed = math.ceil(waiting * mean_gpu_s / queue_wait_s)
        want = max(0, min(want, needed - live))
    return want
