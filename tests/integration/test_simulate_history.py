"""`stoker simulate --from-history`: the generation requests and pool rentals recorded in NATS."""

import asyncio

from libs.cli.main import main
from libs.events import NEW, Aggregate, Metadata, subjects
from libs.events import generation as gen
from libs.events import pool as ev
from libs.events.ids import new_id
from libs.events.store import EventStore
from libs.events.streams import ensure_streams
from libs.stack.nats import EmbeddedNats


async def record(nats_url: str) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, 1)
        store = EventStore(js)
        meta = Metadata(actor="test")
        for n in range(3):
            job = new_id()
            await store.append(Aggregate(subjects.GENERATION, gen.JOB, job),
                               [gen.GenerationRequested(user_id="u1", template="txt2img", expected_seconds=20.0)],
                               NEW, meta)
        offer = ev.Offer(offer_id="o", gpu_name="RTX 4090", dph=0.55, host_id="h", machine_id="m")
        await store.append(Aggregate(subjects.POOL, ev.INSTANCE, new_id()),
                           [ev.InstanceRented(pool_id="hist", provider="sim", provider_id="1", offer=offer, dph=0.55,
                                              label="stoker:hist:x")], NEW, meta)
    finally:
        await nc.close()


def test_from_history_simulates_the_recorded_demand(tmp_path, capsys):
    # A NATS of its own: jobs requested and never queued would be swept by other tests' generation services.
    with EmbeddedNats(tmp_path, ready_timeout=30) as server:
        asyncio.run(record(server.url))
        rc = main(["simulate", "--from-history", "--since", "10m", "--nats", server.url, "--policy", "seed",
                   "--policy", "reactive:idle_s=60"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    first = out.out.splitlines()[0]
    assert first.startswith("3 jobs") and "$0.55/h" in first, first  # the price fitted from the rental
    assert "seed" in out.out and "reactive(idle=60 s)" in out.out


def test_from_history_without_nats_is_a_clear_error(capsys):
    rc = main(["simulate", "--from-history", "--nats", "nats://127.0.0.1:1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot read the event history from nats://127.0.0.1:1" in err and "Traceback" not in err
