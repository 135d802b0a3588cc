"""docker-compose.yml is validated statically (no Docker engine runs here or on CI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_compose_wires_api_worker_redis_and_postgres() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "worker", "redis", "postgres"}
    api_env = services["api"]["environment"]
    assert api_env["AUTODL_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert api_env["AUTODL_REDIS_URL"] == "redis://redis:6379/0"
    assert "--no-worker" in services["api"]["command"]
    assert services["worker"]["command"][:2] == ["autodl", "worker"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (REPO_ROOT / "Dockerfile").is_file()


def test_api_package_never_imports_torch() -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "backend").rglob("*.py")
        if "import torch" in path.read_text() or "from torch" in path.read_text()
    ]
    assert offenders == []
    code = (
        "import sys; import backend.app; "
        "bad = [m for m in ('torch', 'timm', 'worker') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
