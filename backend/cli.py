"""The ``autodl`` command: run the service, manage users and data, drive a server remotely."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from backend.config import get_settings

if TYPE_CHECKING:
    from tqdm import tqdm

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register = Callable[[Subparsers], None]

GROUPS = {"user": "manage users", "weights": "pretrained weights"}
_REGISTERED: list[tuple[str | None, Register]] = []


def command(group: str | None = None) -> Callable[[Register], Register]:
    """Register a function that adds one subcommand (to ``group``'s subcommands, if given);
    a new command is its ``cmd_*`` handler and one such function beside it."""

    def register(add: Register) -> Register:
        _REGISTERED.append((group, add))
        return add

    return register


@command()
def add_serve(commands: Subparsers) -> None:
    serve = commands.add_parser("serve", help="run the web app (and, by default, a worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="do not start a worker")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backend import migrations
    from backend.embedded import lock_data_dir, start_embedded_redis
    from backend.logs import configure_logging
    from backend.processes import child_of_this_process

    settings = get_settings()
    configure_logging(settings)
    lock = lock_data_dir(settings.data_dir) if settings.is_sqlite else None
    settings = migrations.prepare_to_serve(settings)
    embedded = None
    if not settings.redis_url:
        embedded = start_embedded_redis(settings.data_dir)
        os.environ["AUTODL_REDIS_URL"] = embedded.url
        get_settings.cache_clear()
        print(f"autodl: embedded Redis at {embedded.url}", flush=True)
    worker = None
    if not args.no_worker:
        # SIGKILL if this process dies, however it dies: the worker stops at once (a
        # graceful shutdown would try to hand its messages back to the embedded Redis,
        # which dies too, and can hang), its pool processes die with it, and the run it
        # held is recovered by the next server's sweep. A clean stop below is a SIGTERM.
        worker = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "worker", "--concurrency", "1"],
            env=os.environ.copy(),
            preexec_fn=child_of_this_process(signal.SIGKILL),
        )
    print(f"autodl: serving on http://{args.host}:{args.port}", flush=True)
    # uvicorn re-raises SIGTERM once it has shut down; turn it into SystemExit so the
    # worker and the embedded Redis below are stopped instead of outliving the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "backend.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            log_config=None,  # autodl's logging configuration (backend/logs.py)
            timeout_graceful_shutdown=3,
        )
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if embedded is not None:
            embedded.stop()
        if lock is not None:
            lock.close()
    return 0


@command()
def add_worker(commands: Subparsers) -> None:
    worker = commands.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", help="comma-separated queues (default cpu,gpu)")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--gpus", help="GPU index(es) for this worker, e.g. 0")
    worker.add_argument("--name", help="worker name")
    worker.add_argument("--log-level", default="info")
    worker.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if a worker of this host (or --name) sent a heartbeat within its "
        "interval, else 1 (a container healthcheck)",
    )
    worker.set_defaults(func=cmd_worker)


def check_worker(name: str | None) -> int:
    import socket

    from backend.ops.workers import live_workers
    from backend.queue import broker_redis

    try:
        alive = live_workers(broker_redis())
    except Exception as exc:
        print(f"autodl: the broker cannot be reached: {exc}", file=sys.stderr)
        return 1
    host = socket.gethostname()
    mine = [w for w in alive if (w.name == name if name else w.host == host)]
    for w in mine:
        print(f"{w.name}: alive, queues {','.join(w.queues)}")
    if not mine:
        print(
            f"autodl: no live worker {'named ' + name if name else 'on ' + host}", file=sys.stderr
        )
    return 0 if mine else 1


def cmd_worker(args: argparse.Namespace) -> int:
    if args.check:
        return check_worker(args.name)
    if args.gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus
    from worker.celery_app import app

    queues = args.queues or ("gpu" if args.gpus is not None else "cpu,gpu")
    app.worker_main(
        [
            "worker",
            "--loglevel",
            args.log_level.upper(),
            "--queues",
            queues,
            "--concurrency",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--hostname",
            args.name or f"autodl-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


@command()
def add_gc(commands: Subparsers) -> None:
    gc = commands.add_parser(
        "gc", help="remove part files and image files left by interrupted uploads"
    )
    gc.add_argument(
        "--grace-s",
        type=float,
        help="only files older than this (default AUTODL_ORPHAN_GRACE_S, 3600; 0 when no "
        "API is running)",
    )
    gc.set_defaults(func=cmd_gc)


def cmd_gc(args: argparse.Namespace) -> int:
    from backend import migrations
    from backend.images.orphans import remove_orphans

    settings = migrations.prepare_to_serve(get_settings())
    grace = settings.orphan_grace_s if args.grace_s is None else args.grace_s
    print(f"removed {remove_orphans(settings, grace)}")
    return 0


@command()
def add_migrate(commands: Subparsers) -> None:
    commands.add_parser("migrate", help="upgrade the database schema").set_defaults(
        func=cmd_migrate
    )


def cmd_migrate(_: argparse.Namespace) -> int:
    from backend import migrations

    migrations.prepare(get_settings())
    print("autodl: database schema is up to date")
    return 0


@command(group="user")
def add_user_create(users: Subparsers) -> None:
    create = users.add_parser("create", help="create a user")
    create.add_argument("--email", required=True)
    create.add_argument("--password", help="prompted for when omitted")
    create.add_argument("--admin", action="store_true", help="make the account an admin")
    create.add_argument("--token", action="store_true", help="also print an API token")
    create.add_argument("--token-days", type=int, default=90, help="the token's lifetime")
    create.set_defaults(func=cmd_user_create)


def cmd_user_create(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from backend import migrations
    from backend.auth import service
    from backend.auth.schemas import SignupIn
    from backend.db import session_scope

    migrations.prepare(get_settings())
    password = args.password or getpass.getpass("Password (8+ characters): ")
    try:
        body = SignupIn(email=args.email, password=password)
    except ValidationError as exc:
        print(f"autodl: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    with session_scope() as session:
        user = service.create_user(session, body.email, body.password, is_admin=args.admin)
        token = (
            service.issue_api_token(session, user, "cli", args.token_days)[1]
            if args.token
            else None
        )
    print(f"autodl: created user {body.email}")
    if token:
        print(f"API token: {token}")
    return 0


SERVER_URL_HELP = "the server's address, printed in front of the link"


@command(group="user")
def add_user_invite(users: Subparsers) -> None:
    invite = users.add_parser("invite", help="print a one-time sign-up link for an email")
    invite.add_argument("email")
    invite.add_argument("--url", default="http://127.0.0.1:8000", help=SERVER_URL_HELP)
    invite.set_defaults(func=cmd_user_invite)


def cmd_user_invite(args: argparse.Namespace) -> int:
    from backend.admin import service as admin
    from backend.db import session_scope

    email = _email(args.email)
    with session_scope() as session:
        link, secret = admin.invite(session, None, email)
        path = admin.link_path(link, secret)
    print(f"autodl: invitation for {email}, valid once until {link.expires_at:%Y-%m-%d %H:%M} UTC:")
    print(args.url.rstrip("/") + path)
    return 0


@command(group="user")
def add_user_account_actions(users: Subparsers) -> None:
    for action, words in (
        ("disable", "sign a user out everywhere and refuse their logins"),
        ("enable", "let a disabled user log in again"),
        ("reset", "sign a user out everywhere and print a one-time password-reset link"),
    ):
        parser = users.add_parser(action, help=words)
        parser.add_argument("email")
        if action == "reset":
            parser.add_argument("--url", default="http://127.0.0.1:8000", help=SERVER_URL_HELP)
        parser.set_defaults(func=cmd_user_account_action)


def cmd_user_account_action(args: argparse.Namespace) -> int:
    from backend.admin import service as admin
    from backend.db import session_scope

    email = _email(args.email)
    with session_scope() as session:
        user = admin.find_account(session, email)
        if args.action == "disable":
            admin.disable(session, None, user)
        elif args.action == "enable":
            admin.enable(session, user)
        else:
            link, secret = admin.reset(session, None, user)
            print(
                f"autodl: {email} was signed out; reset link, valid once until "
                f"{link.expires_at:%Y-%m-%d %H:%M} UTC:"
            )
            print(args.url.rstrip("/") + admin.link_path(link, secret))
            return 0
    print(f"autodl: {email} {args.action}d")
    return 0


def _email(raw: str) -> str:
    """An email as the API stores it; exits with the reason when it is not one."""
    from backend import migrations
    from backend.auth.schemas import Credentials

    migrations.prepare(get_settings())
    try:
        return Credentials.normalise_email(raw.strip())
    except ValueError as exc:
        print(f"autodl: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


@command()
def add_import(commands: Subparsers) -> None:
    imp = commands.add_parser("import", help="import a folder of images into a project")
    imp.add_argument("directory")
    imp.add_argument("--project", required=True)
    imp.add_argument("--user", help="owner's email (needed when there are several users)")
    imp.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from backend import migrations
    from backend.auth.models import User
    from backend.db import session_scope
    from backend.images.ingest import ingest_directory
    from backend.projects import service as projects
    from backend.projects.models import Project

    settings = migrations.prepare(get_settings())
    folder = Path(args.directory)
    if not folder.is_dir():
        print(f"autodl: {folder} is not a folder", file=sys.stderr)
        return 2
    with session_scope() as session:
        query = select(User).where(User.email == args.user) if args.user else select(User)
        users = session.scalars(query).all()
        if len(users) != 1:
            print("autodl: name the owner with --user EMAIL", file=sys.stderr)
            return 2
        owner = users[0]
        project = session.scalar(
            select(Project).where(Project.owner_id == owner.id, Project.name == args.project)
        ) or projects.create_project(session, owner, args.project)
        report = ingest_directory(session, settings, project, folder)
    rejected = [(item.filename, item.reason) for item in report.rejected]
    where = f" into project {args.project!r}"
    _print_report(len(report.accepted), len(report.duplicates), rejected, where)
    return 0


@command(group="weights")
def add_weights_import(weights: Subparsers) -> None:
    imp = weights.add_parser("import", help="import a weights file for a timm model")
    imp.add_argument("file")
    imp.add_argument("--model", required=True)
    imp.set_defaults(func=cmd_weights_import)


def cmd_weights_import(args: argparse.Namespace) -> int:
    from worker.ml.errors import MLError
    from worker.ml.weights import import_weights

    settings = get_settings()
    settings.ensure_dirs()
    try:
        info = import_weights(Path(args.file), args.model, settings.weights_dir)
    except (MLError, OSError, ValueError) as exc:
        print(f"autodl: {exc}", file=sys.stderr)
        return 2
    print(f"autodl: imported weights for {args.model} (sha256 {info.digest[:12]}…)")
    return 0


# ---------------------------------------------------------------- remote commands


@command()
def add_login(commands: Subparsers) -> None:
    login = commands.add_parser("login", help="log in to an autodl server and save the token")
    login.add_argument("url")
    login.add_argument("--email")
    login.add_argument("--password")
    login.set_defaults(func=cmd_login)


def cmd_login(args: argparse.Namespace) -> int:
    from backend.client import ApiClient, Credentials

    email = args.email or input("Email: ")
    password = args.password or getpass.getpass("Password: ")
    token = ApiClient(args.url).login(email, password)
    path = Credentials(args.url, token).save()
    print(f"autodl: logged in to {args.url} (token saved in {path})")
    return 0


@command()
def add_projects(commands: Subparsers) -> None:
    commands.add_parser("projects", help="list your projects").set_defaults(func=cmd_projects)


def cmd_projects(_: argparse.Namespace) -> int:
    from backend.client import ApiClient

    projects = ApiClient.from_credentials().projects()
    print(f"{'ID':>5}  {'IMAGES':>6}  {'RUNS':>4}  NAME")
    for p in projects:
        print(f"{p['id']:>5}  {p['image_count']:>6}  {p['run_count']:>4}  {p['name']}")
    return 0


@command()
def add_upload(commands: Subparsers) -> None:
    upload = commands.add_parser("upload", help="upload files, folders or zips to a project")
    upload.add_argument("project", help="project name or id (created if missing)")
    upload.add_argument("paths", nargs="+")
    upload.add_argument("--label")
    upload.add_argument("--split", choices=["train", "val", "test"])
    upload.set_defaults(func=cmd_upload)


def cmd_upload(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.client import ApiClient

    api = ApiClient.from_credentials()
    pid = api.project_id(args.project)
    with tqdm(desc="uploading", unit="file", file=sys.stderr) as bar:
        report = api.upload(
            pid,
            [Path(p) for p in args.paths],
            label=args.label,
            split=args.split,
            on_batch=lambda done, total, _: _advance(bar, done, total),
        )
    rejected = [(item["filename"], item["reason"]) for item in report["rejected"]]
    _print_report(len(report["accepted"]), len(report["duplicates"]), rejected)
    return 0


@command()
def add_train(commands: Subparsers) -> None:
    train = commands.add_parser("train", help="start a training run")
    train.add_argument("project")
    train.add_argument("--mode", default="linear", choices=["linear", "finetune", "auto"])
    train.add_argument("--backbone", default="tf_efficientnet_lite0")
    train.add_argument("--head", choices=["auto", "logreg", "svm", "mlp"])
    train.add_argument("--options", help="JSON options, e.g. '{\"epochs\": 3}'")
    train.add_argument("--wait", action="store_true", help="follow progress until it ends")
    train.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from backend.client import ApiClient, wait_message

    api = ApiClient.from_credentials()
    pid = api.project_id(args.project)
    options = json.loads(args.options) if args.options else {}
    if args.head:
        options["head"] = args.head
    run = api.train(pid, args.mode, args.backbone, options)
    print(f"autodl: run {run['id']} queued ({run['mode']}, {run['backbone']})")
    if not args.wait:
        return 0
    with tqdm(
        total=1.0, file=sys.stderr, bar_format="{desc:>11} {percentage:5.1f}%|{bar:30}|"
    ) as bar:
        for event in api.events(run["id"]):
            bar.set_description_str(event["stage"], refresh=False)
            _advance(bar, event["progress"], 1.0)
            run = event
    print(f"autodl: {wait_message(run)}")
    if run["status"] != "succeeded":
        print(f"autodl: {run.get('error') or run['status']}", file=sys.stderr)
        return 1
    metrics = run["metrics"]
    print(
        f"accuracy {metrics['accuracy']:.3f}  balanced accuracy "
        f"{metrics['balanced_accuracy']:.3f}  on {metrics['n_val']} validation images"
    )
    return 0


@command()
def add_runs(commands: Subparsers) -> None:
    runs = commands.add_parser("runs", help="list a project's runs")
    runs.add_argument("project")
    runs.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from backend.client import ApiClient

    api = ApiClient.from_credentials()
    runs = api.runs(api.project_id(args.project))
    print(f"{'ID':>5}  {'STATUS':<10} {'MODE':<9} {'ACCURACY':>8}  BACKBONE")
    for run in runs:
        accuracy = (run.get("metrics") or {}).get("accuracy")
        shown = f"{accuracy:.3f}" if accuracy is not None else "-"
        print(f"{run['id']:>5}  {run['status']:<10} {run['mode']:<9} {shown:>8}  {run['backbone']}")
    return 0


@command()
def add_health(commands: Subparsers) -> None:
    health = commands.add_parser(
        "health", help="the data doctor's report: duplicates, leakage, label errors, fit"
    )
    health.add_argument("project")
    health.add_argument("--check", action="store_true", help="compute a fresh report first")
    health.add_argument("--wait", action="store_true", help="wait until the report is ready")
    health.add_argument("--json", action="store_true", help="print the report as JSON")
    health.set_defaults(func=cmd_health)


def cmd_health(args: argparse.Namespace) -> int:
    import json

    from backend.client import ApiClient

    api = ApiClient.from_credentials()
    pid = api.project_id(args.project)
    report = api.health(pid, check=args.check)
    if args.wait and report["status"] == "computing":

        def show(progress: dict) -> None:
            sys.stderr.write(f"\rautodl: {progress['message']}\033[K")

        report = api.wait_health(pid, on_progress=show)
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_health(report)
    return 1 if report["status"] == "failed" else 0


def print_health(report: dict) -> None:
    """The report in a terminal: findings first, then the detail lists, briefly."""
    if report["status"] != "ready" or not report["current"]:
        print(f"autodl: {report['status']}: {report['message']}")
    if report["computed_at"] is None:
        return
    print(f"Health of the project ({report['backbone']}, computed {report['computed_at']}):")
    marks = {"error": "!!", "warning": "! ", "info": "  "}
    for finding in report["findings"]:
        print(f"{marks[finding['severity']]} {finding['kind']:<18} {finding['message']}")
    fit = report["domain_fit"] or {}
    for advice in fit.get("advice", []):
        print(f"   advice: {advice}")
    if report["effect"]:
        print(report["effect"]["message"])
    issues = report["label_issues"]
    if issues:
        print(f"Likely label errors ({len(issues)}; image id, given -> suggested, score):")
        for issue in issues[:10]:
            print(
                f"  {issue['image_id']:>7}  {issue['given_label']} -> "
                f"{issue['suggested_label']}  {issue['score']:.2f}"
            )
    leaks = [d for d in report["duplicates"] if d["across_splits"]]
    for group in leaks[:10]:
        pairs = zip(group["image_ids"], group["splits"], strict=True)
        where = ", ".join(f"{i} ({split})" for i, split in pairs)
        print(f"  leakage: {where}")
    if report["suggestions"]:
        print(f"{len(report['suggestions'])} suggestions for unlabelled images, first:")
        for s in report["suggestions"][:5]:
            print(f"  {s['image_id']:>7}  {s['suggested_label']}  {s['confidence']:.0%}")
    if report["labels_needed"]:
        print(report["labels_needed"]["message"])


@command()
def add_download(commands: Subparsers) -> None:
    download = commands.add_parser("download", help="download a run's model")
    download.add_argument("run", type=int)
    download.add_argument(
        "--format", default="onnx", choices=["onnx", "torchscript", "onnx-int8", "bundle"]
    )
    download.add_argument("--output", "-o", default=".")
    download.set_defaults(func=cmd_download)


def cmd_download(args: argparse.Namespace) -> int:
    from backend.client import ApiClient

    path = ApiClient.from_credentials().download(args.run, args.format, Path(args.output))
    print(f"autodl: saved {path}")
    return 0


@command()
def add_predict(commands: Subparsers) -> None:
    predict = commands.add_parser("predict", help="classify images with a run's model (remote)")
    predict.add_argument("run", type=int)
    predict.add_argument("images", nargs="+")
    predict.add_argument("--top", type=int, default=3)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from backend.client import ApiClient

    results = ApiClient.from_credentials().predict(args.run, [Path(p) for p in args.images])
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        top = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])[: args.top]
        shown = ", ".join(f"{name} {p:.3f}" for name, p in top)
        print(f"{result['filename']}: {result['label']}  ({shown})")
    return 0


def _print_report(
    accepted: int, duplicates: int, rejected: list[tuple[str, str]], where: str = ""
) -> None:
    print(f"autodl: {accepted} accepted, {duplicates} duplicates, {len(rejected)} rejected{where}")
    for filename, reason in rejected:
        print(f"  rejected {filename}: {reason}")


def _advance(bar: tqdm[None], done: float, total: float) -> None:
    """Show ``done`` of ``total`` (either may change between calls)."""
    bar.total = total
    bar.update(done - bar.n)


def build_parser() -> argparse.ArgumentParser:
    """Every registered command, in the order they are defined above; groups on first use."""
    parser = argparse.ArgumentParser(prog="autodl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, Subparsers] = {}
    for group, register in _REGISTERED:
        if group is None:
            register(commands)
            continue
        if group not in groups:
            groups[group] = commands.add_parser(group, help=GROUPS[group]).add_subparsers(
                dest="action", required=True
            )
        register(groups[group])
    return parser


def main(argv: list[str] | None = None) -> int:
    from backend.client import ClientError
    from backend.errors import AppError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ClientError, AppError) as exc:
        print(f"autodl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
