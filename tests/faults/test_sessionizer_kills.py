"""Fault 2, the sessionizer's delivery guarantee on the real broker: killed with SIGKILL
mid-stream, joined and left by a second instance, or both at once, it produces exactly what an
uninterrupted run produces, as a read_committed reader sees it: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts.events import Event
from contracts.kafka import read_to_end, write_events
from contracts.settings import Settings, load_settings
from klantreis.simulator import collected_events
from tests.support.pipeline import committed as committed_count
from tests.support.pipeline import committed_offsets
from tests.support.processes import Service, start

PARTITIONS = 6
NOW = datetime(2026, 6, 1, tzinfo=UTC)

Outputs = dict[str, dict[bytes | None, list[bytes | None]]]


def input_events() -> list[Event]:
    """About 10k events of simulated shop traffic, in the order a live collector sees them."""
    return collected_events(seed=5, visitors=1200, days=20, now=NOW)


def prefixed(kafka: str, prefix: str) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=kafka,
        topic_prefix=prefix,
        topic_partitions=PARTITIONS,
        idle_after_seconds=0,  # the input is dated months ago: only its events move the clock
    )


async def write_input(settings: Settings, events: list[Event]) -> int:
    await write_events(settings, events)
    return len(events)


async def committed(settings: Settings) -> int:
    """Input events the identity stage has committed as processed."""
    return await committed_count(settings, settings.topics.identities_group)


async def journeys_done(settings: Settings) -> bool:
    """The journey stage has committed every record on its topic, hand-offs included. The
    offsets are read first: a hand-off is written in the transaction that commits the offset of
    the record that asked for it, so it is then already on the topic."""
    topics = settings.topics
    offsets = await committed_offsets(settings, topics.journeys_group)
    bootstrap = str(settings.kafka_bootstrap_servers)
    records = await read_to_end(bootstrap, topics.sessionizer_journeys, PARTITIONS)
    return all(
        offsets.get((topics.sessionizer_journeys, partition), 0) > batch[-1].offset
        for partition, batch in records.items()
        if batch
    )


async def read_outputs(settings: Settings) -> Outputs:
    """Every committed output record, per topic and key, in order; for the changelog, the
    state it holds."""
    topics = settings.topics
    changelogs = [topics.identities_changelog, topics.journeys_changelog]
    names = [topics.sessions, topics.transitions, topics.signals, topics.identities,
             topics.dead_letters, *changelogs]  # fmt: skip
    outputs: Outputs = defaultdict(lambda: defaultdict(list))
    for name in names:
        topic = name.split(".", 1)[1]
        records = await read_to_end(str(settings.kafka_bootstrap_servers), name, PARTITIONS)
        for partition, batch in records.items():
            for record in batch:
                if name in changelogs:
                    # How often a key is written depends on batch boundaries; what a restore
                    # reads is the last value of each key in each partition.
                    key = b"%d/%s" % (partition, record.key or b"")
                    outputs[topic][key] = [record.value]
                else:
                    outputs[topic][record.key].append(record.value)
        if name in changelogs:
            # A deleted key is no state. (Whether a journey's events waited for a hand-off, or
            # the hand-off for them, depends on timing; both leave nothing once done.)
            outputs[topic] = defaultdict(
                list, {key: values for key, values in outputs[topic].items() if values[0]}
            )
    # Dead letters are keyed by site: several stage-2 producers write to that one key, in an
    # order that depends on timing. What each says does not.
    for site, letters in outputs["dead-letters.v1"].items():
        outputs["dead-letters.v1"][site] = sorted(letters, key=lambda value: value or b"")
    return without_numbers(outputs)


def without_numbers(outputs: Outputs) -> Outputs:
    """The outputs with journey and session numbers checked and left out. A journeys partition
    numbers journeys in the order its records came, and records from several producers (events
    of several events partitions, hand-offs) interleave there as timing has it: two runs may
    number differently, but within a run every journey id and session has one number, none
    given twice."""
    of_journey: dict[bytes | None, set[int]] = defaultdict(set)
    of_session: dict[str, set[int]] = defaultdict(set)
    for topic in ("sessions.v1", "transitions.v1"):
        for key, values in outputs[topic].items():
            stripped: list[bytes | None] = []
            for value in values:
                record = json.loads(value or b"{}")
                of_journey[key].add(record.pop("journey_number"))
                if topic == "sessions.v1":
                    of_session[record["session_id"]].add(record.pop("session_number"))
                stripped.append(json.dumps(record).encode())
            outputs[topic][key] = stripped
    numbered: dict[Any, set[int]]
    for numbered in (of_journey, of_session):
        several = {k: given for k, given in numbered.items() if len(given) != 1 or None in given}
        assert not several, f"given more than one number, or none: {several}"
        owners: dict[int, list[object]] = defaultdict(list)
        for owner, given in numbered.items():
            owners[next(iter(given))].append(owner)
        shared = {number: keys for number, keys in owners.items() if len(keys) > 1}
        assert not shared, f"numbers given twice: {shared}"
    changelog = outputs["sessionizer-journeys-changelog.v1"]
    for key in list(changelog):
        kind = (key or b"").split(b"/", 1)[1][:1]
        if kind == b"n":  # the serials
            del changelog[key]
        elif kind == b"j":  # a journey row: its numbers are its last two fields
            changelog[key] = [
                json.dumps(json.loads(v or b"[]")[:-2]).encode() for v in changelog[key]
            ]
    return outputs


def sessionizer(settings: Settings, logs: Path, name: str) -> Service:
    env = {
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
        "KLANTREIS_TOPIC_PARTITIONS": str(PARTITIONS),
        "KLANTREIS_SESSIONIZER_PORT": "0",
        # Small polls: many transactions over the input, so the kills fall between them.
        "KLANTREIS_SESSIONIZER_MAX_POLL_RECORDS": "2000",
        "KLANTREIS_IDLE_AFTER_SECONDS": "0",
    }
    return start(name, ["sessionizer"], env, logs)


async def wait_until(
    condition: Callable[[], object], services: list[Service], timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        for service in services:
            assert service.process.poll() is None, service.output()
        assert time.monotonic() < deadline, "\n".join(s.output()[-3000:] for s in services)
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def reference(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """The outputs of one uninterrupted run over the input."""
    settings = prefixed(kafka_bootstrap, f"ref-{uuid.uuid4().hex[:8]}")
    total = await write_input(settings, input_events())
    service = sessionizer(settings, tmp_path_factory.mktemp("reference"), "reference")
    try:
        await wait_until(lambda: _done(settings, total), [service])
    finally:
        assert service.stop(), service.output()
    return await read_outputs(settings)


async def _done(settings: Settings, total: int) -> bool:
    """Both stages are through the input. Checked twice, a second apart: the identity stage's
    offsets can show as committed an instant before its last records can be read."""
    for pause in (0.0, 1.0):
        await asyncio.sleep(pause)
        if not (await committed(settings) >= total and await journeys_done(settings)):
            return False
    return True


def assert_same(reference: Outputs, actual: Outputs) -> None:
    assert set(actual) == set(reference)
    for topic, by_key in reference.items():
        assert actual[topic].keys() == by_key.keys(), topic
        for key, values in by_key.items():
            assert actual[topic][key] == values, (topic, key)


async def test_the_reference_run_produced_every_kind_of_output(reference: Outputs) -> None:
    kinds = {
        json.loads(v or b"")["kind"] for vs in reference["transitions.v1"].values() for v in vs
    }
    signals = {json.loads(v or b"")["kind"] for vs in reference["signals.v1"].values() for v in vs}
    assert {"entered", "advanced", "fell_back", "dropped_off"} <= kinds
    assert {"cart_abandoned", "repeat_purchase", "phase_reached"} <= signals
    assert reference["identities.v1"] and reference["sessionizer-journeys-changelog.v1"]
    assert reference["sessionizer-identities-changelog.v1"]


async def test_three_sigkills_mid_stream_change_nothing(
    reference: Outputs, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = prefixed(kafka_bootstrap, f"kill-{uuid.uuid4().hex[:8]}")
    total = await write_input(settings, input_events())
    for kill, share in enumerate((0.2, 0.45, 0.7)):
        service = sessionizer(settings, tmp_path, f"run-{kill}")
        target = max(await committed(settings) + 1, int(total * share))
        await wait_until(functools.partial(_past, settings, target), [service])
        service.process.send_signal(signal.SIGKILL)
        service.process.wait()
        # The identity stage may be through the input already; the journey stage must not be.
        assert not await _done(settings, total), "the kill came after both stages were done"
    last = sessionizer(settings, tmp_path, "run-final")
    try:
        await wait_until(lambda: _done(settings, total), [last])
    finally:
        assert last.stop(), last.output()
    assert_same(reference, await read_outputs(settings))


async def _past(settings: Settings, count: int) -> bool:
    return await committed(settings) >= count


async def test_an_instance_joining_and_leaving_mid_stream_changes_nothing(
    reference: Outputs, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = prefixed(kafka_bootstrap, f"join-{uuid.uuid4().hex[:8]}")
    total = await write_input(settings, input_events())
    first = sessionizer(settings, tmp_path, "first")
    try:
        await wait_until(lambda: _past(settings, int(total * 0.2)), [first])
        second = sessionizer(settings, tmp_path, "second")
        await wait_until(lambda: "restored partitions" in second.output(), [first, second])
        await wait_until(lambda: _past(settings, int(total * 0.6)), [first, second])
        assert second.stop(), second.output()
        await wait_until(lambda: _done(settings, total), [first])
    finally:
        assert first.stop(), first.output()
    assert_same(reference, await read_outputs(settings))


async def feed(settings: Settings, events: list[Event], chunks: int, pause: float) -> None:
    """The input as a live collector delivers it: in chunks, over time."""
    size = -(-len(events) // chunks)
    for first in range(0, len(events), size):
        await write_events(settings, events[first : first + size])
        await asyncio.sleep(pause)


async def test_a_sigkill_while_a_second_instance_joins_and_leaves_changes_nothing(
    reference: Outputs, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """While the input arrives, the first instance dies mid-transaction just after a second one
    joined; the second takes every partition, a replacement joins it, and the second leaves."""
    settings = prefixed(kafka_bootstrap, f"both-{uuid.uuid4().hex[:8]}")
    events = input_events()
    total = len(events)
    first = sessionizer(settings, tmp_path, "first")
    feeding = asyncio.create_task(feed(settings, events, chunks=40, pause=0.5))
    await wait_until(lambda: _past(settings, 1), [first])
    second = sessionizer(settings, tmp_path, "second")
    await wait_until(lambda: "restored partitions" in second.output(), [first, second])
    killed_at = await committed(settings)
    assert not feeding.done(), "the input was all there before the kill"
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    replacement = sessionizer(settings, tmp_path, "replacement")
    try:
        await wait_until(
            lambda: "restored partitions" in replacement.output(), [second, replacement]
        )
        left_at = await committed(settings)
        assert second.stop(), second.output()
        await feeding
        await wait_until(lambda: _done(settings, total), [replacement])
    finally:
        feeding.cancel()
        assert replacement.stop(), replacement.output()
    outputs = await read_outputs(settings)
    assert_same(reference, outputs)
    records = sum(len(values) for by_key in outputs.values() for values in by_key.values())
    print(
        f"\nSIGKILL at {killed_at} of {total} events, with a second instance joined; the second "
        f"left at {left_at}: {records} output records and state entries, equal to the "
        "uninterrupted run"
    )
