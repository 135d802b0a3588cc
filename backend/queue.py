"""The API's side of Celery: send tasks by name (no worker code, no torch, imported here)."""

from __future__ import annotations

import time
from functools import lru_cache

from celery import Celery

from backend.config import Settings, get_settings

TRAIN_TASK = "autodl.train_run"
PING_TASK = "autodl.ping"
RECOVER_TASK = "autodl.recover_runs"
HEALTH_TASK = "autodl.examine_project"
EXPLAIN_TASK = "autodl.explain_image"
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
    )


@lru_cache
def celery_client() -> Celery:
    app = Celery("autodl")
    configure(app, get_settings())
    return app


def queue_for_mode(mode: str) -> str:
    """Fine-tuning wants a GPU worker; linear probes and auto's first stage run anywhere."""
    return "gpu" if mode == "finetune" else "cpu"


def enqueue_run(run_id: int, mode: str) -> None:
    celery_client().send_task(
        TRAIN_TASK,
        args=[run_id],
        queue=queue_for_mode(mode),
        ignore_result=True,  # the run row carries the outcome, not Celery's result backend
        retry=True,
        retry_policy=PUBLISH_RETRY,
    )


def enqueue_health(project_id: int, generation: int) -> None:
    """The data doctor's check of a project (a linear probe's worth of CPU work)."""
    celery_client().send_task(
        HEALTH_TASK,
        args=[project_id, generation],
        queue="cpu",
        ignore_result=True,  # the health_report row carries the outcome
        retry=True,
        retry_policy=PUBLISH_RETRY,
    )


def enqueue_explanation(run_id: int, image_id: int) -> None:
    """A Grad-CAM heatmap: one forward and backward pass, on any worker."""
    celery_client().send_task(
        EXPLAIN_TASK,
        args=[run_id, image_id],
        queue="cpu",
        ignore_result=True,  # the explanation row carries the outcome
        retry=True,
        retry_policy=PUBLISH_RETRY,
    )


def ping_worker(timeout: float = 2.0) -> dict[str, object]:
    """Round trip a ping task through the broker; reports whether a worker answered."""
    started = time.perf_counter()
    try:
        result = celery_client().send_task(
            PING_TASK, queue="cpu", retry=True, retry_policy=PUBLISH_RETRY
        )
        answer = result.get(timeout=timeout)
    except Exception as exc:  # broker down, no worker, timeout: all mean "not alive"
        return {"alive": False, "reason": type(exc).__name__}
    return {"alive": True, "answer": answer, "ms": round((time.perf_counter() - started) * 1000)}
