"""What a service does when Kafka fails it: start again, ever more slowly, unless the error is
one a fresh start cannot mend."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, ProducerFenced, for_code

from contracts import kafka
from contracts.kafka import outlived_by, ride_out


def test_outages_are_outlived_and_fencing_or_bugs_are_not() -> None:
    assert outlived_by(KafkaConnectionError("broker gone"))
    assert outlived_by(KafkaError("send_offsets_to_transaction failed"))
    assert outlived_by(ConnectionResetError())
    assert not outlived_by(ProducerFenced())
    assert not outlived_by(ValueError("a bug"))


def test_a_broker_answering_producer_fenced_is_fatal() -> None:
    # Brokers answer a fenced producer's EndTxn with code 90, not the older 47.
    answer = for_code(90)()
    assert isinstance(answer, ProducerFenced)
    assert not outlived_by(answer)


async def test_a_run_failed_by_kafka_starts_again_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "FIRST_RESTART_DELAY", 0.01)
    attempts: list[int] = []
    reasons: list[str] = []

    async def run() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise KafkaConnectionError("Unable to bootstrap")

    await ride_out("test", run, asyncio.Event(), reasons.append)
    assert len(attempts) == 3
    assert reasons == ["KafkaConnectionError", "KafkaConnectionError"]


async def test_a_fatal_error_ends_the_run_with_its_reason() -> None:
    async def run() -> None:
        raise ProducerFenced()

    with pytest.raises(ProducerFenced):
        await ride_out("test", run, asyncio.Event())


async def test_a_stop_during_the_wait_ends_it_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "FIRST_RESTART_DELAY", 60.0)
    stop = asyncio.Event()
    attempts: list[int] = []

    async def run() -> None:
        attempts.append(1)
        asyncio.get_running_loop().call_later(0.05, stop.set)
        raise KafkaConnectionError("broker gone")

    await asyncio.wait_for(ride_out("test", run, stop), timeout=5)
    assert attempts == [1]
