"""``/metrics`` in Prometheus' text format (prometheus-client).

Two kinds of figures:

- this API process's own: HTTP request latency by method, route template and status;
- the fleet's, read from the database and the broker at scrape time (so every API replica
  reports the same numbers and a worker needs no port of its own): runs by status and mode,
  run and stage durations, featurization throughput, queue depth and live workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.db import session_scope
from backend.logs import run_context, run_id_of_path
from backend.ops.workers import live_workers
from backend.queue import broker_redis, queue_depths
from backend.runs.models import Run, RunMode, RunStatus

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STAGE_TIMINGS = (
    "featurize_s",
    "train_head_s",
    "linear_probe_s",
    "finetune_s",
    "rank_s",
    "export_s",
)

registry = CollectorRegistry(auto_describe=False)
ProcessCollector(registry=registry)
PlatformCollector(registry=registry)
http_latency = Histogram(
    "autodl_http_request_duration_seconds",
    "Time to answer an HTTP request (to the end of its body), by route template.",
    ("method", "route", "status"),
    buckets=HTTP_BUCKETS,
    registry=registry,
)


def _histogram(
    name: str, documentation: str, labels: list[str], series: dict[tuple[str, ...], list[float]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, values in sorted(series.items()):
        buckets = [
            (str(bound), float(sum(1 for v in values if v <= bound))) for bound in DURATION_BUCKETS
        ]
        family.add_metric(list(key), buckets, sum_value=sum(values))
    return family


class FleetCollector(Collector):
    """Figures of the whole service, read when Prometheus scrapes."""

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only, never at registration

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._runs()
        except Exception:  # a scrape says what it can; the database check is in /ready
            log.warning("metrics: the database could not be read", exc_info=True)
        try:
            yield from self._broker()
        except Exception:
            log.warning("metrics: the broker could not be read", exc_info=True)

    def _runs(self) -> Iterable[Metric]:
        with session_scope() as session:
            counts = session.execute(
                select(Run.status, Run.mode, func.count()).group_by(Run.status, Run.mode)
            ).all()
            finished = session.execute(
                select(Run.mode, Run.status, Run.started_at, Run.finished_at).where(
                    Run.started_at.is_not(None), Run.finished_at.is_not(None)
                )
            ).all()
            succeeded = session.execute(
                select(Run.mode, Run.backbone, Run.metrics)
                .where(Run.status == RunStatus.SUCCEEDED, Run.metrics.is_not(None))
                .order_by(Run.id)
            ).all()
        runs = GaugeMetricFamily(
            "autodl_runs", "Runs by status and mode.", labels=["status", "mode"]
        )
        seen = {(RunStatus(s).value, RunMode(m).value): n for s, m, n in counts}
        for status in RunStatus:
            for mode in RunMode:
                runs.add_metric([status.value, mode.value], seen.get((status.value, mode.value), 0))
        yield runs

        durations: dict[tuple[str, ...], list[float]] = {}
        for mode, status, started, ended in finished:
            if started is None or ended is None:
                continue
            key = (RunMode(mode).value, RunStatus(status).value)
            durations.setdefault(key, []).append(max(0.0, (ended - started).total_seconds()))
        yield _histogram(
            "autodl_run_duration_seconds",
            "Wall time of finished runs, from claim to final state.",
            ["mode", "status"],
            durations,
        )

        stages: dict[tuple[str, ...], list[float]] = {}
        throughput: dict[str, float] = {}
        for mode, backbone, metrics in succeeded:
            timings: dict[str, Any] = metrics.get("timings") or {}
            for stage in STAGE_TIMINGS:
                if isinstance(timings.get(stage), int | float):
                    stages.setdefault((RunMode(mode).value, stage.removesuffix("_s")), []).append(
                        float(timings[stage])
                    )
            computed = (metrics.get("featurized") or {}).get("computed") or 0
            featurize_s = timings.get("featurize_s") or 0
            if computed and featurize_s:
                throughput[backbone] = computed / featurize_s  # the latest run's, by id order
        yield _histogram(
            "autodl_stage_duration_seconds",
            "Seconds each stage of succeeded runs took.",
            ["mode", "stage"],
            stages,
        )
        rate = GaugeMetricFamily(
            "autodl_featurize_images_per_second",
            "Images featurized per second by the latest run that computed embeddings (cached "
            "ones are not counted), by backbone.",
            labels=["backbone"],
        )
        for backbone, value in sorted(throughput.items()):
            rate.add_metric([backbone], round(value, 3))
        yield rate

    def _broker(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "autodl_queue_depth", "Tasks waiting in each broker queue.", labels=["queue"]
        )
        for queue, n in queue_depths().items():
            depth.add_metric([queue], n)
        yield depth
        workers = GaugeMetricFamily(
            "autodl_workers", "Workers that sent a heartbeat within two of their intervals."
        )
        workers.add_metric([], len(live_workers(broker_redis())))
        yield workers


registry.register(FleetCollector())


def render() -> bytes:
    return generate_latest(registry)


class RequestMetrics:
    """ASGI middleware: latency by route template (never the raw path, whose ids would make
    a series per object), and the run id of ``/api/runs/{rid}...`` on the request's logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            with run_context(run_id_of_path(scope.get("path", ""))):
                await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            http_latency.labels(scope.get("method", ""), template, str(status)).observe(
                time.perf_counter() - started
            )
