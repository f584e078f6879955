"""Where the sites are kept, so that every collector and read API follows the same ones.

With Kafka, the sites live on a compacted topic of one partition (`Topics.sites`). Each process
reads it whole at start and then follows it, so a new site, host list, write key or read token
reaches every collector within a second or two, and a request never waits on the store: the
collector's hot path looks keys up in memory. While the broker is unreachable the processes keep
the last sites they read. The topic needs nothing klantreis does not already run, and compaction
keeps it at one record per site. The day's cookieless salt (`DailySalt`, keyed `salt/<day>`)
travels on it too, so every collector names a cookieless visitor alike.

Embedded, one process holds the sites; a JSON file in the data directory keeps them across
restarts, and another the day's salt.

Either store, on start, adds the sites `KLANTREIS_SITES` names that it does not hold yet.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from contextlib import suppress
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.kafka import ensure_topics, new_producer
from contracts.settings import Settings
from contracts.sites import (
    SALT_KEY_PREFIX,
    DailySalt,
    SiteDirectory,
    SiteRecord,
    new_salt,
    salt_key,
    seed_sites,
)

log = logging.getLogger(__name__)
SALTS_FILE = "cookieless-salt.json"


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a file only its owner may read: created 0600, so the
    secret inside is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    temporary.replace(path)


class SiteStore(Protocol):
    @property
    def directory(self) -> SiteDirectory:
        """The sites as last read: what each request is checked against."""
        ...

    async def put(self, site: SiteRecord) -> None:
        """Keep `site` (replacing the site of its id), durably, before returning."""
        ...

    async def salt_of(self, day: date) -> bytes:
        """The cookieless salt of `day` (made if there is none); every older one destroyed."""
        ...


class FileSiteStore:
    """The embedded pipeline's sites, in one JSON file written whole and atomically."""

    def __init__(self, path: Path, seed: Iterable[SiteRecord] = ()) -> None:
        self._path = path
        self._salts_path = path.with_name(SALTS_FILE)
        self._salt: DailySalt | None = None
        if self._salts_path.exists():
            self._salt = DailySalt.from_bytes(self._salts_path.read_bytes())
        sites: dict[str, SiteRecord] = {}
        if path.exists():
            for site in msgspec.json.decode(path.read_bytes(), type=list[SiteRecord]):
                sites[site.site_id] = site
        missing = [site for site in seed if site.site_id not in sites]
        sites.update((site.site_id, site) for site in missing)
        self._directory = SiteDirectory(sites)
        if missing or not path.exists():
            self._save()

    @property
    def directory(self) -> SiteDirectory:
        return self._directory

    async def put(self, site: SiteRecord) -> None:
        self._directory = SiteDirectory(self._directory.sites | {site.site_id: site})
        self._save()

    async def salt_of(self, day: date) -> bytes:
        """Kept in a file of its own, rewritten (and the old salt with it gone) each day."""
        if self._salt is None or self._salt.day != day:
            self._salt = new_salt(day)
            write_private(self._salts_path, self._salt.to_bytes())
        return bytes.fromhex(self._salt.salt)

    def _save(self) -> None:
        sites = sorted(self._directory.sites.values(), key=lambda site: site.site_id)
        write_private(self._path, msgspec.json.encode(sites))


class KafkaSiteStore:
    """The sites topic, read whole on entry and followed until exit.

    Entry creates the topics if needed, reads the sites topic to its end, and adds the seed's
    missing sites; exit stops the follower, then the consumer and the producer.
    """

    def __init__(self, settings: Settings, seed: Iterable[SiteRecord] = ()) -> None:
        self._settings = settings
        self._topic = settings.topics.sites
        self._partition = TopicPartition(self._topic, 0)
        self._seed = list(seed)
        self._directory = SiteDirectory({})
        self._salts: dict[date, DailySalt] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._follower: asyncio.Task[None] | None = None

    @property
    def directory(self) -> SiteDirectory:
        return self._directory

    async def __aenter__(self) -> Self:
        await ensure_topics(self._settings)
        self._producer = new_producer(self._settings, client_id="klantreis-sites")
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.require_kafka(),
            enable_auto_commit=False,
            client_id="klantreis-sites",
        )
        try:
            await self._producer.start()
            await self._consumer.start()
            self._consumer.assign([self._partition])
            await self._consumer.seek_to_beginning(self._partition)
            await self._read_to_end(self._consumer)
            for site in self._seed:
                if site.site_id not in self._directory.sites:
                    await self.put(site)
        except BaseException:
            await self._stop()
            raise
        self._follower = asyncio.create_task(self._follow(self._consumer), name="sites")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        follower, self._follower = self._follower, None
        try:
            if follower is not None:
                follower.cancel()
                with suppress(asyncio.CancelledError):
                    await follower
        finally:
            try:
                if self._consumer is not None:
                    await self._consumer.stop()
            finally:
                if self._producer is not None:
                    await self._producer.stop()

    async def put(self, site: SiteRecord) -> None:
        assert self._producer is not None, "the store is not open"
        await self._producer.send_and_wait(self._topic, site.to_bytes(), key=site.partition_key)
        self._apply([(site.partition_key, site.to_bytes())])

    @property
    def salt_days(self) -> frozenset[date]:
        """The days whose salt this process holds (today's, once a cookieless event came)."""
        return frozenset(self._salts)

    async def salt_of(self, day: date) -> bytes:
        """Today's salt as the topic has it; the first collector of a day makes it. Two
        collectors that make one at the same moment both publish; the later record wins for
        all of them within a second, and ids of that second may differ between them."""
        salt = self._salts.get(day)
        if salt is None:
            assert self._producer is not None, "the store is not open"
            salt = new_salt(day)
            await self._producer.send_and_wait(self._topic, salt.to_bytes(), key=salt.partition_key)
            self._apply([(salt.partition_key, salt.to_bytes())])
            for old in [d for d in self._salts if d < day]:
                await self._producer.send_and_wait(self._topic, None, key=salt_key(old))
                self._apply([(salt_key(old), None)])
        return bytes.fromhex(self._salts[day].salt)

    async def _read_to_end(self, consumer: AIOKafkaConsumer) -> None:
        end = (await consumer.end_offsets([self._partition]))[self._partition]
        while await consumer.position(self._partition) < end:
            batches = await consumer.getmany(self._partition, timeout_ms=1000)
            self._apply([(r.key, r.value) for rs in batches.values() for r in rs])

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        """Apply every later change. The consumer reconnects by itself; until it does, the
        sites read last stay in force."""
        while True:
            try:
                batches = await consumer.getmany(self._partition, timeout_ms=1000)
            except KafkaError as exc:
                log.warning("cannot read the sites topic (%s); keeping the last sites", exc)
                await asyncio.sleep(1)
                continue
            except Exception:  # a follower that stopped would freeze every key rotation
                log.exception("reading the sites topic failed; keeping the last sites")
                await asyncio.sleep(1)
                continue
            self._apply([(r.key, r.value) for rs in batches.values() for r in rs])

    def _apply(self, changes: list[tuple[bytes | None, bytes | None]]) -> None:
        if not changes:
            return
        sites = dict(self._directory.sites)
        for key, value in changes:
            if key is not None and key.startswith(SALT_KEY_PREFIX.encode()):
                self._apply_salt(key, value)
                continue
            if value is None:
                if key is not None:
                    sites.pop(key.decode(errors="replace"), None)
                continue
            try:
                site = SiteRecord.from_bytes(value)
            except msgspec.DecodeError as exc:
                log.warning("skipping an unreadable site record: %s", exc)
                continue
            sites[site.site_id] = site  # the topic's order decides, for every reader alike
        self._directory = SiteDirectory(sites)

    def _apply_salt(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            day = date.fromisoformat(key.decode()[len(SALT_KEY_PREFIX) :])
            self._salts.pop(day, None)
            return
        try:
            salt = DailySalt.from_bytes(value)
        except msgspec.DecodeError as exc:
            log.warning("skipping an unreadable salt record: %s", exc)
            return
        self._salts[salt.day] = salt


def seed_of(settings: Settings) -> list[SiteRecord]:
    """The sites the environment names (`KLANTREIS_SITES`, `KLANTREIS_SITE_HOSTS`): the seed
    for a store's first start."""
    return seed_sites(settings.write_keys, settings.site_hosts, datetime.now(UTC))
