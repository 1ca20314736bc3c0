"""The job aggregate: given events, when a command, then events (no I/O)."""

from datetime import timedelta

import pytest

from libs.events import generation as ev
from services.generation import domain as d
from services.generation.fakes import T0

REQ = ev.GenerationRequested(user_id="u1", template="txt2img", params={"prompt": "fox"}, checkpoint="sd15",
                             estimated_cost=0.01, expected_seconds=10.0, webhook_url="https://example.com/hook")
CLAIM = d.Claim(instance_id="i1", lease_id="l1", base_url="http://h1", prompt_id="p1", client_id="c1", dph=0.36)
OUT = ev.Output(object_name="gen/u1/j1/00-a.png", filename="a.png", content_type="image/png", size=3, sha256="ab")


def given(*events: object, at=T0) -> d.Job:
    job = d.Job(id="j1")
    for n, event in enumerate(events):
        job = d.evolve(job, event, at + timedelta(seconds=n))
    return job


def claimed(n: int = 1, instance: str = "i1", prompt: str = "p1") -> ev.GenerationClaimed:
    return ev.GenerationClaimed(instance_id=instance, lease_id="l1", base_url="http://h1", prompt_id=prompt,
                                client_id="c1", attempt=n, dph=0.36)


def test_submit_records_the_request_once() -> None:
    assert d.decide(given(), d.Submit(request=REQ)) == [REQ]
    assert d.decide(given(REQ), d.Submit(request=REQ)) == []
    assert given(REQ).status == "queued"


def test_commands_on_an_unknown_job_are_not_found() -> None:
    with pytest.raises(d.DomainError) as err:
        d.decide(given(), d.Cancel(at=T0))
    assert err.value.code == "NOT_FOUND"


def test_queue_sequence_is_recorded_once() -> None:
    assert d.decide(given(REQ), d.MarkQueued(seq=7)) == [ev.GenerationQueued(seq=7)]
    assert d.decide(given(REQ, ev.GenerationQueued(seq=7)), d.MarkQueued(seq=8)) == []


def test_claim_starts_an_attempt_and_a_second_claim_is_refused() -> None:
    [event] = d.decide(given(REQ), CLAIM)
    assert event == claimed()
    job = given(REQ, event)
    assert job.status == "running" and job.current and job.current.prompt_id == "p1"
    with pytest.raises(d.DomainError):
        d.decide(job, CLAIM)


def test_start_is_recorded_for_the_current_prompt_only_once() -> None:
    job = given(REQ, claimed())
    assert d.decide(job, d.Start(prompt_id="p1")) == [ev.GenerationStarted(instance_id="i1", prompt_id="p1",
                                                                           lease_id="l1", attempt=1)]
    assert d.decide(job, d.Start(prompt_id="other")) == []
    started = given(REQ, claimed(), ev.GenerationStarted(instance_id="i1", prompt_id="p1"))
    assert d.decide(started, d.Start(prompt_id="p1")) == []


def test_completion_charges_the_claimed_time_once() -> None:
    job = given(REQ, claimed())  # claimed at T0 + 1s
    events = d.decide(job, d.Complete(prompt_id="p1", outputs=(OUT,), at=T0 + timedelta(seconds=11)))
    done, charge = events
    assert isinstance(done, ev.GenerationCompleted) and done.seconds == 10.0 and done.outputs == (OUT,)
    assert charge == ev.GenerationCharged(user_id="u1", amount=0.001, seconds=10.0, dph=0.36, instance_id="i1")
    finished = given(REQ, claimed(), *events)
    assert finished.status == "completed" and finished.charged == 0.001
    assert d.decide(finished, d.Complete(prompt_id="p1", outputs=(OUT,), at=T0)) == []
    assert d.decide(finished, d.Fail(reason="timeout", message="m", at=T0)) == []


def test_completion_of_a_stale_attempt_is_refused() -> None:
    with pytest.raises(d.DomainError):
        d.decide(given(REQ, claimed()), d.Complete(prompt_id="old", outputs=(), at=T0))


def test_a_lost_instance_requeues_until_attempts_run_out() -> None:
    job = given(REQ, claimed())
    [lost] = d.decide(job, d.LoseInstance(message="gone", max_attempts=2, at=T0))
    assert lost == ev.GenerationAttemptLost(instance_id="i1", attempt=1, message="gone")
    again = given(REQ, claimed(), lost)
    assert again.status == "queued" and again.current is None
    second = given(REQ, claimed(), lost, claimed(2, "i2", "p2"))
    events = d.decide(second, d.LoseInstance(message="gone again", max_attempts=2, at=T0))
    assert [type(e).__name__ for e in events] == ["GenerationAttemptLost", "GenerationFailed"]
    assert events[1].reason == "instance_lost" and "gone again" in events[1].message


def test_cancel_ends_a_queued_job_and_interrupts_a_running_one() -> None:
    [failed] = d.decide(given(REQ), d.Cancel(at=T0))
    assert failed.reason == "cancelled" and given(REQ, failed).status == "cancelled"
    assert d.decide(given(REQ, failed), d.Cancel(at=T0)) == []
    running = given(REQ, claimed())
    [asked] = d.decide(running, d.Cancel(at=T0))
    assert isinstance(asked, ev.GenerationCancelRequested)
    assert d.decide(given(REQ, claimed(), asked), d.Cancel(at=T0)) == []
    lost = d.decide(given(REQ, claimed(), asked), d.LoseInstance(message="x", max_attempts=3, at=T0))
    assert lost[-1].reason == "cancelled"


def test_cancel_of_a_completed_job_is_a_conflict() -> None:
    done = given(REQ, claimed(), ev.GenerationCompleted(prompt_id="p1"))
    with pytest.raises(d.DomainError) as err:
        d.decide(done, d.Cancel(at=T0))
    assert err.value.code == "CONFLICT"


def test_webhook_attempts_are_numbered_and_abandoned_at_the_limit() -> None:
    done = given(REQ, claimed(), ev.GenerationCompleted(prompt_id="p1"))
    assert done.webhook_pending
    first = d.decide(done, d.RecordWebhook(attempt=1, url="u", event="generation.completed", delivered=False,
                                           max_attempts=2, error="HTTP 503", next_attempt_at=T0))
    assert first == [ev.WebhookAttempted(attempt=1, url="u", event="generation.completed", delivered=False,
                                         error="HTTP 503", next_attempt_at=T0)]
    after = given(REQ, claimed(), ev.GenerationCompleted(prompt_id="p1"), *first)
    assert d.decide(after, d.RecordWebhook(attempt=1, url="u", event="e", delivered=True, max_attempts=2)) == []
    last = d.decide(after, d.RecordWebhook(attempt=2, url="u", event="e", delivered=False, max_attempts=2,
                                           error="down"))
    assert [type(e).__name__ for e in last] == ["WebhookAttempted", "WebhookAbandoned"]
    assert not given(REQ, claimed(), ev.GenerationCompleted(prompt_id="p1"), *first, *last).webhook_pending


def test_tags_are_normalized_and_only_on_own_outputs() -> None:
    done = given(REQ, claimed(), ev.GenerationCompleted(prompt_id="p1", outputs=(OUT,)))
    [tagged] = d.decide(done, d.Tag(object_name=OUT.object_name, add=(" Fox ", "red", "fox")))
    assert tagged == ev.OutputTagged(object_name=OUT.object_name, tags=("fox", "red"))
    job = given(REQ, claimed(), ev.GenerationCompleted(prompt_id="p1", outputs=(OUT,)), tagged)
    assert d.decide(job, d.Tag(object_name=OUT.object_name, remove=("RED",)))[0].tags == ("fox",)
    with pytest.raises(d.DomainError) as err:
        d.decide(job, d.Tag(object_name=OUT.object_name, add=("<script>",)))
    assert err.value.code == "VALIDATION_FAILED"
    with pytest.raises(d.DomainError) as err:
        d.decide(job, d.Tag(object_name="gen/u1/j1/99-x.png", add=("a",)))
    assert err.value.code == "NOT_FOUND"
    [deleted] = d.decide(job, d.DeleteOutput(object_name=OUT.object_name))
    gone = given(REQ, claimed(), ev.GenerationCompleted(prompt_id="p1", outputs=(OUT,)), tagged, deleted)
    assert gone.deleted == (OUT.object_name,) and gone.tags == {}
    with pytest.raises(d.DomainError):
        d.decide(gone, d.DeleteOutput(object_name=OUT.object_name))


def test_a_resumed_attempt_is_charged_until_its_prompt_ended_on_the_host() -> None:
    job = given(REQ, claimed())  # claimed at T0 + 1 s
    at = T0 + timedelta(seconds=41)  # found by another worker 30 s after the prompt ended
    [done, charged] = d.decide(job, d.Complete(prompt_id="p1", outputs=(OUT,), at=at,
                                                ran_until=T0 + timedelta(seconds=11)))
    assert done.seconds == charged.seconds == 10.0 and charged.amount == round(0.36 * 10 / 3600, 6)
    late = d.decide(job, d.Complete(prompt_id="p1", outputs=(), at=at, ran_until=at + timedelta(hours=1)))
    assert late[1].seconds == 40.0  # a host clock ahead: never more than claim to now
    early = d.decide(job, d.Complete(prompt_id="p1", outputs=(), at=at, ran_until=T0 - timedelta(hours=1)))
    assert early[1].seconds == 0.0  # a host clock behind: never less than nothing
    [failed] = d.decide(job, d.Fail(reason="execution_error", message="x", at=at, ran_until=T0 + timedelta(seconds=6)))
    assert failed.cost == round(0.36 * 5 / 3600, 6)
