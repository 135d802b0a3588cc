"""The API's side of Celery: send tasks by name (no worker code, no torch, imported here)."""

from __future__ import annotations

import ast
import base64
import json
from functools import lru_cache
from typing import cast

import redis
from celery import Celery

from backend.config import Settings, get_settings

TRAIN_TASK = "autodl.train_run"
PING_TASK = "autodl.ping"
QUEUES = ("cpu", "gpu")
RECOVER_TASK = "autodl.recover_runs"
HEALTH_TASK = "autodl.examine_project"
EXPLAIN_TASK = "autodl.explain_image"
PACE_TASK = "autodl.measure_pace"
# A broker that is down should fail a request in seconds, not hang it.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def broker_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise RuntimeError(
            "No broker configured: set AUTODL_REDIS_URL, or start the app with `autodl serve`, "
            "which runs an embedded Redis."
        )
    return settings.redis_url


def configure(app: Celery, settings: Settings) -> None:
    url = broker_url(settings)
    app.conf.update(
        broker_url=url,
        result_backend=url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        result_backend_transport_options={"retry_policy": {"max_retries": 2}},
        broker_transport_options={"visibility_timeout": 24 * 3600},
        worker_hijack_root_logger=False,
        # A pool process that a run or a cancel left above this size is replaced after the
        # task (an idle worker returns to its idle size instead of keeping 1-2 GB for ever).
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
    )


@lru_cache
def celery_client() -> Celery:
    app = Celery("autodl")
    configure(app, get_settings())
    return app


def queue_for_mode(mode: str) -> str:
    """Fine-tuning wants a GPU worker; linear probes and auto's first stage run anywhere."""
    return "gpu" if mode == "finetune" else "cpu"


def _publish(task: str, args: list[int | str], queue: str) -> None:
    """Send a task by name, retrying the broker connection; the database row the task
    updates carries its outcome, not Celery's result backend."""
    celery_client().send_task(
        task, args=args, queue=queue, ignore_result=True, retry=True, retry_policy=PUBLISH_RETRY
    )


def enqueue_run(run_id: int, mode: str) -> None:
    _publish(TRAIN_TASK, [run_id], queue_for_mode(mode))


def enqueue_health(project_id: int, generation: int) -> None:
    """The data doctor's check of a project (a linear probe's worth of CPU work)."""
    _publish(HEALTH_TASK, [project_id, generation], "cpu")


def enqueue_explanation(run_id: int, image_id: int) -> None:
    """A Grad-CAM heatmap: one forward and backward pass, on any worker."""
    _publish(EXPLAIN_TASK, [run_id, image_id], "cpu")


def enqueue_pace(project_id: int, backbone: str) -> None:
    """A short measurement of a backbone's pace on a few of the project's pictures."""
    _publish(PACE_TASK, [project_id, backbone], "cpu")


def redis_py_url(url: str) -> str:
    """The broker URL as redis-py spells it (kombu's ``redis+socket://`` is a unix socket)."""
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url


@lru_cache
def broker_redis() -> redis.Redis:
    """A plain client of the broker's Redis, quick to give up: health checks, heartbeats,
    queue depths and sent-task marks must not hang on a broker that is down."""
    return redis.Redis.from_url(
        redis_py_url(broker_url(get_settings())),
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=10,
    )


# kombu keeps a Redis list per queue and priority step; priority 0 is the plain name.
_PRIORITY_LISTS = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue."""
    client = broker_redis()
    return {
        queue: sum(cast(int, client.llen(queue + step)) for step in _PRIORITY_LISTS)
        for queue in QUEUES
    }


def _task_args(raw: bytes) -> tuple[str, list[object]] | None:
    """The task name and arguments of one message as kombu stores it in Redis."""
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
        if "argsrepr" in headers:
            args = ast.literal_eval(headers["argsrepr"])
        else:
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
        return str(headers.get("task", "")), list(args)
    except (ValueError, KeyError, TypeError, SyntaxError, IndexError):
        return None


def waiting_run_ids() -> set[int]:
    """Runs with a training task waiting in a queue (not yet taken by any worker)."""
    client = broker_redis()
    waiting: set[int] = set()
    for queue in QUEUES:
        for step in _PRIORITY_LISTS:
            for raw in cast(list[bytes], client.lrange(queue + step, 0, -1)):
                parsed = _task_args(raw)
                if parsed and parsed[0] == TRAIN_TASK and parsed[1]:
                    run_id = parsed[1][0]
                    if isinstance(run_id, int):
                        waiting.add(run_id)
    return waiting
