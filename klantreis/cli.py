"""The `klantreis` command: one subcommand per service, plus `up`, `simulate` and tooling."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, start_http_server

from contracts.settings import ConfigurationError, Settings, load_settings
from klantreis.runtime import tune_garbage_collection

log = logging.getLogger("klantreis")


def _serve(
    app_factory: Callable[[Settings], object], settings: Settings, port: int, ops_port: int = 0
) -> None:
    """One server for the app, listening on its port and, if given, the operators' port."""
    from klantreis.serving import listening_sockets, server_config

    app = app_factory(settings)
    tune_garbage_collection()
    sockets = listening_sockets(settings.host, port, ops_port)
    uvicorn.Server(server_config(app, settings, port)).run(sockets=sockets)


def cmd_up(settings: Settings, _: argparse.Namespace) -> None:
    if not settings.embedded:
        raise ConfigurationError(
            "`klantreis up` runs the embedded pipeline; with KLANTREIS_KAFKA_BOOTSTRAP_SERVERS "
            "set, run `klantreis ingest`, `klantreis sessionizer` and `klantreis metrics` instead"
        )
    from functools import partial

    from klantreis.embedded import create_app

    _serve(partial(create_app, announce=True), settings, settings.port)


REPORTS = (
    "funnel",
    "dropoff",
    "metrics",
    "touchpoints",
    "trends",
    "channels",
    "devices",
    "segments",
)


def cmd_report(settings: Settings, args: argparse.Namespace) -> None:
    """The read API's figures on the command line: the same query functions, the same date
    rules and the same figure types as `/api/v1`, from the warehouse or, with `--url`, from a
    running read API; a table, or with `--json` the figure as the API writes it."""
    from klantreis.report import table

    figure = _remote_figure(args) if args.url else _warehouse_figure(settings, args)
    print(json.dumps(figure, indent=2) if args.json else table(figure))


def _warehouse_figure(settings: Settings, args: argparse.Namespace) -> Any:
    from datetime import date, timedelta

    from pydantic import TypeAdapter

    from services.metrics import queries
    from services.metrics.access import ReadRefused
    from services.metrics.api import DEFAULT_DAYS, date_range
    from services.metrics.app import open_warehouse

    model = settings.phase_model_loaded
    timeout = timedelta(minutes=settings.session_timeout_minutes)  # as the read API passes it
    try:
        first, last = (date.fromisoformat(d) if d else None for d in (args.date_from, args.date_to))
        days = date_range(first, last, None)  # all time, where a figure allows it
        daily = date_range(first, last, DEFAULT_DAYS)
    except (ValueError, ReadRefused) as exc:
        raise ConfigurationError(f"report: {exc}") from None
    assert daily is not None
    warehouse = open_warehouse(settings)
    try:
        site = args.site
        answers: dict[str, Callable[[], object]] = {
            "funnel": lambda: queries.phase_funnel(warehouse, site, model, days),
            "dropoff": lambda: queries.dropoff(warehouse, site, model, days),
            "metrics": lambda: queries.shop_metrics(warehouse, site, model, days, timeout),
            "touchpoints": lambda: queries.touchpoints(warehouse, site, model, days),
            "trends": lambda: queries.trends(warehouse, site, model, daily),
            "channels": lambda: queries.breakdown(warehouse, site, model, "channel", daily),
            "devices": lambda: queries.breakdown(warehouse, site, model, "device", daily),
            "segments": lambda: queries.breakdown(warehouse, site, model, "segment", daily),
        }
        answer = answers[args.report]()
    finally:
        warehouse.close()
    # The figure's own type says how it is written, derived rates included, as the API does.
    kind: Any = list[type(answer[0])] if isinstance(answer, list) and answer else type(answer)  # type: ignore[misc]
    return TypeAdapter(kind).dump_python(answer, mode="json")


def _remote_figure(args: argparse.Namespace) -> Any:
    import httpx

    from klantreis.report import REMOTE, figure_of

    if not args.token:
        raise ConfigurationError("report --url needs --token (a read token of the site, or admin)")
    path, extra, _ = REMOTE[args.report]
    params = {"site": args.site, **extra}
    params |= {k: v for k, v in (("date_from", args.date_from), ("date_to", args.date_to)) if v}
    try:
        response = httpx.get(
            args.url.rstrip("/") + path,
            params=params,
            headers={"Authorization": f"Bearer {args.token}"},
            timeout=60,
        )
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"report: {args.url} did not answer: {exc}") from None
    if response.status_code != 200:
        raise ConfigurationError(
            f"report: {args.url} answered {response.status_code}: {response.text[:300]}"
        )
    return figure_of(args.report, response.json())


def cmd_ingest(settings: Settings, _: argparse.Namespace) -> None:
    settings.require_kafka()
    from services.ingest.app import create_app

    _serve(create_app, settings, settings.port, settings.ingest_ops_port)


def cmd_metrics(settings: Settings, _: argparse.Namespace) -> None:
    settings.require_kafka()
    from services.metrics.app import create_app

    _serve(create_app, settings, settings.api_port, settings.api_ops_port)


async def report_a_slow_stop(stop: asyncio.Event, after: float = 10.0) -> None:
    """If the process is still stopping `after` seconds after it was asked to, log where every
    task waits: what a stop that never ends is stuck on."""
    await stop.wait()
    await asyncio.sleep(after)
    stacks = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(file=stacks)
    log.error("still stopping %.0fs after the signal; tasks:\n%s", after, stacks.getvalue())


def cmd_sessionizer(settings: Settings, _: argparse.Namespace) -> None:
    settings.require_kafka()
    from services.sessionizer.telemetry import SessionizerMetrics
    from services.sessionizer.worker import Sessionizer

    tune_garbage_collection()
    registry = CollectorRegistry()
    metrics = SessionizerMetrics(registry)
    if settings.sessionizer_port:
        start_http_server(settings.sessionizer_port, addr=settings.host, registry=registry)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("sessionizer running")
        watchdog = asyncio.create_task(report_a_slow_stop(stop))
        try:
            await Sessionizer(settings, metrics).run(stop)
        finally:
            watchdog.cancel()
        log.info("sessionizer stopped cleanly")

    asyncio.run(main())


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> None:
    from services.metrics.app import open_warehouse

    open_warehouse(settings).close()
    print(f"schema of {settings.clickhouse_database} is up to date")


def cmd_topics(settings: Settings, _: argparse.Namespace) -> None:
    from contracts.kafka import ensure_topics

    asyncio.run(ensure_topics(settings))
    print("\n".join(settings.topics.all()))


def _incident(text: str) -> Any:
    from klantreis.simulator import Incident

    try:
        return Incident.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> None:
    from klantreis.simulator import generate_journeys, send_journeys

    journeys = generate_journeys(
        args.seed, args.visitors, args.days, incident=args.incident, ab_test=args.ab_test
    )
    url = args.url or f"http://{settings.host}:{settings.port}"
    report = asyncio.run(send_journeys(url, args.key, journeys))
    print(json.dumps({"visitors": len(journeys), **report.as_dict()}))


def _admin_url(settings: Settings, url: str | None) -> str:
    """The admin API: the embedded app's port, or the read API's beside Kafka."""
    if url:
        return url.rstrip("/")
    from klantreis.quickstart import local_url

    return local_url(settings, settings.port if settings.embedded else settings.api_port)


def _admin_call(
    settings: Settings, url: str | None, method: str, path: str, body: Any = None
) -> Any:
    """One call of the admin API with the admin token; a refusal ends the command with its
    message."""
    import httpx

    from klantreis.quickstart import admin_token

    token = admin_token(settings) if settings.embedded else settings.require_admin_token()
    target = f"{_admin_url(settings, url)}{path}"
    try:
        response = httpx.request(
            method, target, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        print(f"klantreis: cannot reach the admin API at {target}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if response.status_code >= 400:
        try:
            message = response.json().get("message") or response.text
        except ValueError:
            message = response.text
        print(f"klantreis: {response.status_code}: {message}", file=sys.stderr)
        raise SystemExit(1)
    return None if response.status_code == 204 else response.json()


def cmd_erase(settings: Settings, args: argparse.Namespace) -> None:
    """`klantreis erase --site S CUSTOMER`: erase a customer, and wait until it is complete."""
    import time
    from urllib.parse import quote

    path = f"/api/v1/customers/{quote(args.customer, safe='')}?site={quote(args.site)}"
    status = _admin_call(settings, args.url, "DELETE", path)
    deadline = time.monotonic() + args.wait
    while status["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _admin_call(
            settings, args.url, "GET", f"/api/v1/admin/erasures/{status['erasure_id']}"
        )
    print(json.dumps(status, indent=2))
    if status["status"] == "failed":
        raise SystemExit(1)


def cmd_sites(settings: Settings, args: argparse.Namespace) -> None:
    """`klantreis sites ...`: the admin API (`/api/v1/admin/sites`) on the command line."""
    base = "/api/v1/admin/sites"
    site, hosts = getattr(args, "site", ""), getattr(args, "host", None) or []
    calls: dict[str, tuple[str, str, Any]] = {
        "list": ("GET", base, None),
        "add": ("POST", base, {"site_id": site, "hosts": hosts}),
        "hosts": ("PUT", f"{base}/{site}/hosts", hosts),
        "rotate-key": ("POST", f"{base}/{site}/write-key", None),
        "add-token": ("POST", f"{base}/{site}/tokens", {"name": getattr(args, "name", "") or ""}),
        "revoke": ("DELETE", f"{base}/{site}/tokens/{getattr(args, 'token_id', '')}", None),
        "privacy": (
            "PUT",
            f"{base}/{site}/privacy",
            {
                "cookieless": getattr(args, "cookieless", False),
                "require_consent": getattr(args, "require_consent", False),
                "honour_dnt": getattr(args, "honour_dnt", False),
            },
        ),
    }
    method, path, body = calls[args.action]
    answer = _admin_call(settings, args.url, method, path, body)
    print(f"revoked {args.token_id}" if answer is None else json.dumps(answer, indent=2))


def cmd_kafka(settings: Settings, args: argparse.Namespace) -> None:
    from pathlib import Path

    from klantreis.local_kafka import LocalKafka, fetch_jars

    if args.action == "fetch":
        print(fetch_jars())
        return
    broker = LocalKafka(port=args.port, data_dir=Path(args.data_dir) if args.data_dir else None)
    with broker:
        print(f"KLANTREIS_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
        stopped = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stopped.set)
            await stopped.wait()

        asyncio.run(wait())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klantreis", description="Real-time customer-journey analytics for web shops."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run the whole pipeline in one process (embedded, no Kafka)")
    commands.add_parser("ingest", help="run the collector (needs Kafka)")
    commands.add_parser("sessionizer", help="run the sessionizer (needs Kafka)")
    commands.add_parser("metrics", help="run the warehouse writer and read API (needs Kafka)")
    commands.add_parser("migrate", help="bring the ClickHouse schema up to date")
    commands.add_parser("topics", help="create the Kafka topics")
    report = commands.add_parser("report", help="print a dashboard figure from the warehouse")
    report.add_argument("report", choices=REPORTS)
    report.add_argument("--site", required=True)
    report.add_argument("--from", dest="date_from", help="first day (YYYY-MM-DD)")
    report.add_argument("--to", dest="date_to", help="last day (YYYY-MM-DD), inclusive")
    report.add_argument("--json", action="store_true", help="the figure as JSON, not a table")
    report.add_argument("--url", help="a running read API to ask instead of the warehouse")
    report.add_argument("--token", help="with --url: a read token of the site, or the admin token")
    simulate = commands.add_parser("simulate", help="send realistic shop traffic to a collector")
    simulate.add_argument("--url", help="collector base URL (default http://HOST:PORT)")
    simulate.add_argument("--key", default="demo", help="write key (default demo)")
    simulate.add_argument("--visitors", type=int, default=200)
    simulate.add_argument("--days", type=float, default=30.0, help="history to spread over")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument(
        "--ab-test", action="store_true", help="an ab_bucket (test or control) on every event"
    )
    simulate.add_argument(
        "--incident",
        type=_incident,
        metavar="DEVICE:FIRST:LAST",
        help="payments fail for 2 in 3 on DEVICE from day FIRST to LAST (YYYY-MM-DD)",
    )
    sites = commands.add_parser("sites", help="manage sites, write keys and read tokens")
    sites.add_argument("--url", help="the admin API (default: this installation's)")
    site_actions = sites.add_subparsers(dest="action", required=True)
    site_actions.add_parser("list", help="every site, its write keys, hosts and tokens")
    for action, text in (
        ("add", "add a site with a new write key"),
        ("hosts", "replace the page hosts a site accepts (none: every host)"),
        ("rotate-key", "replace the site's write key with a new one"),
        ("add-token", "issue a read token (printed once)"),
        ("revoke", "revoke a read token"),
        ("privacy", "replace the site's privacy settings (flags not given are turned off)"),
    ):
        command = site_actions.add_parser(action, help=text)
        command.add_argument("site")
        if action in ("add", "hosts"):
            command.add_argument("--host", action="append", help="a page host; repeat for more")
        if action == "add-token":
            command.add_argument("--name", help="who or what the token is for")
        if action == "revoke":
            command.add_argument("token_id")
        if action == "privacy":
            command.add_argument("--cookieless", action="store_true", help="no cookie or storage")
            command.add_argument(
                "--require-consent", action="store_true", help="store only consented events"
            )
            command.add_argument("--honour-dnt", action="store_true", help="honour DNT and GPC")
    erase = commands.add_parser(
        "erase", help="erase a customer and every id linked to them (GDPR art. 17)"
    )
    erase.add_argument("customer", help="the customer's id, as the shop sends it")
    erase.add_argument("--site", required=True)
    erase.add_argument("--url", help="the admin API (default: this installation's)")
    erase.add_argument(
        "--wait", type=float, default=3600, help="seconds to wait for it to complete"
    )
    kafka = commands.add_parser("kafka", help="a local single-node Kafka broker for development")
    kafka.add_argument("action", choices=("fetch", "run"))
    kafka.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    kafka.add_argument("--data-dir", default=None, help="keep the broker's data here")
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], None]] = {
    "up": cmd_up,
    "ingest": cmd_ingest,
    "sessionizer": cmd_sessionizer,
    "metrics": cmd_metrics,
    "migrate": cmd_migrate,
    "topics": cmd_topics,
    "report": cmd_report,
    "simulate": cmd_simulate,
    "sites": cmd_sites,
    "erase": cmd_erase,
    "kafka": cmd_kafka,
}


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs each request's URL, which for an erasure names the customer.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        COMMANDS[args.command](settings, args)
    except ConfigurationError as exc:
        print(f"klantreis: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
