"""Settings, read once from the environment (prefix ``AUTODL_``)."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "autodl-insecure-development-key"


class Settings(BaseSettings):
    """Every knob of the service; README.md documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="AUTODL_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(default=Path("./autodl-data"))
    database_url: str = ""
    redis_url: str = ""
    cache_dir_override: Path | None = Field(default=None, alias="AUTODL_CACHE_DIR")
    # Where images, thumbnails and model files live: empty = the data dir; s3://bucket/prefix
    # = an S3-compatible store (endpoint and credentials from the AWS_* variables), with a
    # local read cache of at most storage_cache_mb in the data dir.
    storage_url: str = ""
    storage_cache_mb: int = 2048
    secret_key: str = DEFAULT_SECRET_KEY

    max_request_bytes: int = 2 * 1024**3
    max_image_bytes: int = 50 * 1024**2
    max_image_pixels: int = 64_000_000
    max_zip_entries: int = 20_000
    max_zip_total_bytes: int = 8 * 1024**3
    max_zip_ratio: int = 100
    max_request_pixels: int = 10_000_000_000  # decoded per upload or prediction request
    quota_bytes: int = 0  # image bytes one user may store; 0 = no quota

    # open: anyone may sign up; invite: only with an admin's invite link; closed: nobody
    # (accounts come from `autodl user create`). Whatever the mode, the first account of a
    # fresh server may sign up (except when closed) and becomes its admin.
    signup: Literal["open", "invite", "closed"] = "invite"
    invite_max_age_s: int = 7 * 24 * 3600
    reset_max_age_s: int = 24 * 3600

    # Rate limits (`limits` notation, several windows separated by ';'). Counted in Redis
    # (the broker's, or this URL) so that every API process counts the same attempts.
    rate_limit_storage_url: str = ""
    rate_limit_login: str = "20/minute;200/day"  # log-in and reset attempts per client address
    rate_limit_login_account: str = "10/15 minutes"  # failed log-ins per email
    rate_limit_signup: str = "10/hour"  # sign-ups per client address
    rate_limit_tokens: str = "30/hour"  # API tokens made per account

    session_max_age_s: int = 14 * 24 * 3600
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    cookie_secure: bool = False

    hf_offline: bool = True
    # How a CPU worker featurizes training images: "measure" uses the fastest path that keeps
    # the answers (bf16, int8), measured once per backbone and machine on a run's images
    # (worker/ml/precision.py); "f32" always runs float32 ONNX Runtime.
    cpu_runtime: Literal["measure", "f32"] = "measure"
    # A run whose worker has not written its row for this long is recovered (requeued once,
    # then failed); see backend/runs/transitions.py.
    worker_heartbeat_timeout_s: int = 90
    # Each worker process announces itself in Redis this often; /api/health/ready counts a
    # worker alive while its last announcement is younger than two intervals.
    worker_heartbeat_interval_s: float = 10.0
    # Part files and unreferenced image files older than this are leftovers of an
    # interrupted upload, removed at API start and by `autodl gc`.
    orphan_grace_s: float = 3600.0
    # How often the recovery sweep (API and workers) looks for silent or unsent runs.
    recovery_sweep_s: float = 30.0
    # A worker's pool process is replaced after a task that leaves it above this resident
    # size (Celery's worker_max_memory_per_child), so an idle worker returns to its idle
    # size; 0 turns it off. max_tasks_per_child replaces it after that many tasks (0: never).
    worker_max_memory_mb: int = 1024
    worker_max_tasks_per_child: int = 0

    # Logs: one line per record with time, level, logger and run id; JSON objects instead
    # when log_json is true (for a log collector).
    log_json: bool = False
    log_level: str = "info"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'autodl.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def thumbnails_dir(self) -> Path:
        return self.data_dir / "thumbnails"

    @property
    def cache_dir(self) -> Path:
        """Embeddings and exported feature models; may be shared between data dirs."""
        return self.cache_dir_override or self.data_dir / "cache"

    @property
    def weights_dir(self) -> Path:
        return self.data_dir / "weights"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    def run_dir(self, run_id: int) -> Path:
        """Everything a run wrote (model files, heatmaps); removed with the run."""
        return self.artifacts_dir / f"run-{run_id}"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def check_production(self) -> None:
        """Refuse to run against a shared database with a guessable secret key."""
        if self.is_sqlite:
            return
        if self.secret_key == DEFAULT_SECRET_KEY or secret_key_bits(self.secret_key) < 256:
            raise RuntimeError(
                "AUTODL_SECRET_KEY must hold at least 32 random bytes when AUTODL_DATABASE_URL "
                "points at a production database, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
            )

    def ensure_dirs(self) -> None:
        for path in (
            self.data_dir,
            self.images_dir,
            self.thumbnails_dir,
            self.cache_dir,
            self.weights_dir,
            self.artifacts_dir,
            self.tmp_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)


_CHARACTER_CLASSES = (
    (re.compile(r"^[0-9a-fA-F]+$"), 16),  # hex, as from secrets.token_hex
    (re.compile(r"^[A-Za-z0-9_\-]+$"), 64),  # URL-safe base64, as from secrets.token_urlsafe
    (re.compile(r"^[A-Za-z0-9+/=]+$"), 64),  # base64, as from openssl rand -base64
)


def secret_key_bits(key: str) -> float:
    """An upper estimate of a key's entropy in bits: its length times the bits per character
    of the alphabet it is drawn from. A key that repeats a pattern ('xxxx...', a word over and
    over) counts as one copy of the pattern, so it cannot pass by length alone."""
    period = next(
        (
            p
            for p in range(1, len(key) // 2 + 1)
            if key == (key[:p] * (len(key) // p + 1))[: len(key)]
        ),
        len(key),
    )
    symbols = key[:period]
    if len(set(symbols)) < 2:
        return 0.0
    alphabet = next((size for pattern, size in _CHARACTER_CLASSES if pattern.match(key)), 95)
    return len(symbols) * math.log2(alphabet)


@lru_cache
def get_settings() -> Settings:
    return Settings()
