"""docker-compose.yml is validated statically (no Docker engine runs here or on CI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_wires_api_workers_redis_and_postgres() -> None:
    services = compose()["services"]
    assert set(services) == {
        "migrate",
        "api",
        "worker",
        "worker-gpu",
        "redis",
        "postgres",
        "minio",
        "minio-bucket",
    }
    api_env = services["api"]["environment"]
    assert api_env["AUTODL_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert api_env["AUTODL_REDIS_URL"] == "redis://redis:6379/0"
    assert "--no-worker" in services["api"]["command"]
    assert services["migrate"]["command"] == ["autodl", "migrate"]
    assert (REPO_ROOT / "Dockerfile").is_file()


def test_a_cpu_worker_by_default_and_a_gpu_worker_behind_a_profile() -> None:
    services = compose()["services"]
    cpu, gpu = services["worker"], services["worker-gpu"]
    assert cpu["command"][:2] == ["autodl", "worker"] and "--gpus" not in cpu["command"]
    assert "deploy" not in cpu and "profiles" not in cpu  # runs on any host
    assert gpu["profiles"] == ["gpu"]
    assert gpu["command"][gpu["command"].index("--queues") + 1] == "gpu"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"]


def test_restart_policies_healthchecks_and_start_order() -> None:
    services = compose()["services"]
    for name in ("api", "worker", "worker-gpu", "redis", "postgres", "minio"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("api", "worker", "worker-gpu", "redis", "postgres", "minio"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("worker", "worker-gpu"):
        assert services[name]["healthcheck"]["test"] == ["CMD", "autodl", "worker", "--check"]
    for name in ("api", "worker", "worker-gpu"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["postgres"]["condition"] == "service_healthy", name
        assert needs["redis"]["condition"] == "service_healthy", name
    assert "/api/health/live" in " ".join(services["api"]["healthcheck"]["test"])


def test_the_image_runs_as_an_unprivileged_user() -> None:
    lines = [line.strip() for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines.index(f"USER {users[-1]}") > max(
        i for i, line in enumerate(lines) if line.startswith("RUN ")
    )


def test_minio_is_optional_and_wired_to_the_storage_setting() -> None:
    services = compose()["services"]
    assert services["minio"]["profiles"] == ["minio"]
    assert services["minio-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    env = services["api"]["environment"]
    assert env["AUTODL_STORAGE_URL"] == "${AUTODL_STORAGE_URL:-}"
    for variable in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert variable in env and variable in services["worker"]["environment"]
    assert services["minio"]["environment"]["MINIO_ROOT_USER"].startswith("${AWS_ACCESS_KEY_ID")


def test_the_cli_commands_compose_runs_exist() -> None:
    services = compose()["services"]
    for name in ("migrate", "api", "worker", "worker-gpu"):
        command = services[name]["command"]
        args = [a for a in command[1:] if not a.startswith("$")]
        subprocess.run(
            [sys.executable, "-m", "backend.cli", args[0], "--help"],
            check=True,
            cwd=REPO_ROOT,
            capture_output=True,
        )
    check = services["worker"]["healthcheck"]["test"][1:]
    help_text = subprocess.run(
        [sys.executable, "-m", "backend.cli", *check[1:2], "--help"],
        check=True,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert "--check" in help_text


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
