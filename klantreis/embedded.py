"""`klantreis up` without Kafka: collector, sessionizer and warehouse writer in one process.

The same stage code as the Kafka services runs here; only the hand-offs differ. The collector's
sink feeds the sessionizer core directly, and everything goes to the embedded ClickHouse (chDB)
in group commits: a request is answered once the insert holding its events has succeeded, so
requests arriving within one flush interval share one insert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import orjson
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from contracts.events import DeadLetter, Event
from contracts.pseudonyms import Pseudonyms
from contracts.records import StoredRecord
from contracts.settings import Settings
from contracts.sites import digest
from contracts.sitestore import FileSiteStore, seed_of
from klantreis import quickstart
from services.ingest import api as ingest_api
from services.ingest.app import add_probes
from services.ingest.sink import SinkUnavailable
from services.ingest.telemetry import IngestMetrics
from services.metrics import api as read_api
from services.metrics import routes as read_routes
from services.metrics.app import open_warehouse
from services.metrics.erasure import ErasureLog, ErasureStatus, erase_from_warehouse, linked_ids
from services.metrics.queries import given_serials
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.writer import WarehouseWriter
from services.sessionizer.config import journey_rules
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.telemetry import SessionizerMetrics

log = logging.getLogger(__name__)

# How long a request waits for the insert holding its events. Generous: chDB's first insert
# into a table after start-up alone can take over a second, and that is no reason to refuse.
COMMIT_TIMEOUT_SECONDS = 15.0

STATE_FILE = "sessionizer-state.json"
STATE_VERSION = 2


class EmbeddedPipeline:
    """An EventSink that runs the rest of the pipeline in-process.

    A clean stop flushes every pending row and saves the sessionizer's state to the data
    directory, so a restart continues the same sessions. A crash loses nothing a client was told
    was stored, but the sessionizer state since the last clean start is gone: a visitor's next
    session after a crash starts afresh, while their journey's furthest phase, kept in the
    warehouse, is unaffected.
    """

    def __init__(self, settings: Settings, warehouse: Warehouse, registry: CollectorRegistry):
        self._settings = settings
        self._warehouse = warehouse
        self._writer = WarehouseWriter(warehouse, WarehouseMetrics(registry))
        self._metrics = SessionizerMetrics(registry)
        self._engine = JourneyEngine(journey_rules(settings))
        self._state_path = Path(settings.data_dir) / STATE_FILE
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._last_flush_failed = False
        self._last_event = time.monotonic()
        self._flush_lock = asyncio.Lock()

    async def __aenter__(self) -> EmbeddedPipeline:
        if self._state_path.exists():
            saved = orjson.loads(self._state_path.read_bytes())
            if isinstance(saved, dict) and saved.get("version") == STATE_VERSION:
                self._engine.restore_state(saved["engine"])
                log.info("restored %d journeys", self._engine.active_journeys)
            else:
                log.warning("ignoring %s: written by another version", self._state_path)
        # After a crash the saved state is older than the warehouse: numbers given since the
        # last save are there, and must not be given again.
        self._engine.journeys.load_serials(given_serials(self._warehouse))
        self._flusher = asyncio.create_task(self._flush_forever(), name="embedded-flush")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        flusher, self._flusher = self._flusher, None
        try:
            if flusher is not None:
                flusher.cancel()
                with suppress(asyncio.CancelledError):
                    await flusher
        finally:
            await self._flush_once()
            self._save_state()

    async def ready(self) -> bool:
        return self._flusher is not None and not self._last_flush_failed

    async def publish(self, events: Sequence[Event]) -> None:
        self._last_event = time.monotonic()
        records: list[StoredRecord] = []
        for event in events:
            records.append(event)
            duplicates = self._engine.identities.duplicates
            outputs = self._engine.process(event)
            self._metrics.duplicates.inc(self._engine.identities.duplicates - duplicates)
            self._metrics.count(outputs)
            records.extend(outputs)
            self._metrics.events_processed.inc()
        self._metrics.active_journeys.set(self._engine.active_journeys)
        await self._commit(records)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await self._commit(letters)

    async def _commit(self, records: Sequence[StoredRecord]) -> None:
        if self._flusher is None:
            raise SinkUnavailable("the pipeline is not running")
        self._writer.add(records)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._writer.fullest_table_rows >= self._settings.flush_rows:
            self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout=COMMIT_TIMEOUT_SECONDS)
        except TimeoutError:
            raise SinkUnavailable("the warehouse did not store the events in time") from None

    async def _flush_forever(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self._settings.flush_interval_seconds
                )
            self._wake.clear()
            self._pass_time()
            await self._flush_once()

    def _pass_time(self) -> None:
        """The held events that are due by the wall clock go (`reorder`); with no event for
        `idle_after_seconds`, the sessionizer's clock follows the wall clock too (at most once
        per that interval), so a quiet shop's last visitors still drop off and their carts are
        still signalled."""
        idle_after = self._settings.idle_after_seconds
        now = datetime.now(UTC)
        if not idle_after or time.monotonic() - self._last_event < idle_after:
            outputs = self._engine.release_due(now)
        else:
            self._last_event = time.monotonic()
            outputs = self._engine.pass_time(now)
        self._metrics.count(outputs)
        self._writer.add(outputs)

    async def flush(self) -> None:
        """Insert what is pending now, not at the next interval."""
        await self._flush_once()

    def forget(self, site_id: str, ids: Sequence[str]) -> None:
        """Erase the ids from the sessionizer's state, and from the state file at once: a
        crash must not bring them back with the file of the last clean stop."""
        self._engine.forget(site_id, ids)
        self._metrics.active_journeys.set(self._engine.active_journeys)
        self._save_state()

    async def _flush_once(self) -> None:
        async with self._flush_lock:
            await self._flush_pending()

    async def _flush_pending(self) -> None:
        """Insert what is pending and release the requests waiting on it. A failed insert keeps
        its rows for the next attempt; its requests time out with 503 and may retry, which the
        replacing tables absorb."""
        waiters, self._waiters = self._waiters, []
        try:
            if self._writer.fullest_table_rows:
                await self._writer.flush()
        except Exception:
            log.exception("embedded warehouse insert failed; will retry")
            self._last_flush_failed = True
            self._waiters = waiters + self._waiters
            return
        self._last_flush_failed = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _save_state(self) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._state_path.with_suffix(".tmp")
        temporary.write_bytes(
            orjson.dumps({"version": STATE_VERSION, "engine": self._engine.export_state()})
        )
        temporary.replace(self._state_path)


SITES_FILE = "sites.json"


class EmbeddedEraser:
    """Erasure in one process: the sessionizer's state at once, then the warehouse's rows.

    1. write what is pending, so the identity links of the newest events are in the warehouse;
    2. find the customer's ids there, and record the erasure as pending;
    3. forget the ids in the sessionizer's state (and its state file);
    4. write what is pending again: outputs made before step 3 describe the customer too;
    5. in the background: delete the rows stored until then, recompute the aggregates, record
       the erasure as complete.
    """

    def __init__(self, pipeline: EmbeddedPipeline, warehouse: Warehouse) -> None:
        self._pipeline = pipeline
        self._warehouse = warehouse
        self._log = ErasureLog(warehouse)
        self._running: set[asyncio.Task[None]] = set()

    async def erase(self, site_id: str, customer_key: str) -> ErasureStatus:
        await self._pipeline.flush()
        ids = await asyncio.to_thread(linked_ids, self._warehouse, site_id, customer_key)
        status = await asyncio.to_thread(self._log.start, site_id, ids)
        self._pipeline.forget(site_id, ids)
        await self._pipeline.flush()
        task = asyncio.create_task(self._finish(status, ids), name=f"erasure-{status.erasure_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return status

    async def resume(self) -> None:
        """Finish the erasures a stop interrupted."""
        for status, ids in await asyncio.to_thread(self._log.pending):
            self._pipeline.forget(status.site_id, ids)
            await self._finish(status, ids)

    async def wait(self) -> None:
        """Let running erasures finish (a clean stop)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _finish(self, status: ErasureStatus, ids: list[str]) -> None:
        before = datetime.now(UTC)
        try:
            deleted = await asyncio.to_thread(
                erase_from_warehouse, self._warehouse, status.site_id, ids, before
            )
        except Exception:
            log.exception("erasure %s failed; it stays pending", status.erasure_id)
            return
        await asyncio.to_thread(self._log.finish, status, deleted)
        log.info("erasure %s complete: %d rows", status.erasure_id, deleted)


def create_app(settings: Settings, announce: bool = False) -> FastAPI:
    """The whole pipeline as one app; `announce` prints where it serves and the demo link."""
    registry = CollectorRegistry()
    ingest_metrics = IngestMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        admin_digest = digest(quickstart.admin_token(settings))
        key = quickstart.pseudonym_key(settings)
        pseudonyms = Pseudonyms(key) if key else None
        sites = FileSiteStore(Path(settings.data_dir) / SITES_FILE, seed_of(settings))
        read_token = await quickstart.demo_read_token(settings, sites)
        warehouse = await asyncio.to_thread(open_warehouse, settings)
        try:
            async with EmbeddedPipeline(settings, warehouse, registry) as pipeline:
                eraser = EmbeddedEraser(pipeline, warehouse)
                await eraser.resume()
                app.state.ingest = ingest_api.IngestContext(
                    settings, pipeline, ingest_metrics, sites, pseudonyms
                )
                app.state.read = read_api.ReadContext(
                    settings,
                    warehouse,
                    settings.phase_model_loaded,
                    sites,
                    admin_digest,
                    pseudonyms,
                    eraser,
                )
                if announce:
                    print(quickstart.welcome(settings, read_token), flush=True)
                try:
                    yield
                finally:
                    await eraser.wait()
        finally:
            warehouse.close()

    app = FastAPI(title="klantreis", version="1", lifespan=lifespan)
    ingest_api.install(app)
    read_routes.install(app)
    add_probes(app, registry)
    return app
