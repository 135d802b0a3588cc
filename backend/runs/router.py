from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from backend.deps import CurrentUser, SessionDep, SettingsDep
from backend.projects.deps import ProjectDep
from backend.runs import estimates, predict, service
from backend.runs.deps import RunDep
from backend.runs.events import run_events
from backend.runs.schemas import (
    ArtifactOut,
    BatchPredictOut,
    EstimatesOut,
    MeasureIn,
    MeasureOut,
    PredictionsOut,
    PredictOut,
    RunIn,
    RunOut,
    RunPatch,
    UsageOut,
)
from backend.runs.zoo import zoo_with_weights
from backend.schemas import AUTHED, OWNED, WRITE, errors, files_of
from backend.storage import recorded_file

router = APIRouter(tags=["runs"])

backbones_router = APIRouter(tags=["backbones"])

MEDIA_TYPES = {
    "onnx": "application/octet-stream",
    "onnx-int8": "application/octet-stream",
    "torchscript": "application/octet-stream",
    "bundle": "application/zip",
    "openvino": "application/zip",
}


@backbones_router.get("/api/backbones", responses=errors(*AUTHED))
def backbones(_: CurrentUser, settings: SettingsDep) -> list[dict[str, object]]:
    return zoo_with_weights(settings.weights_dir, offline=settings.hf_offline)


@router.post(
    "/api/projects/{pid}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunOut,
    responses=errors(*OWNED, *WRITE, 409, 503),
)
def create_run(body: RunIn, project: ProjectDep, session: SessionDep) -> RunOut:
    return service.run_out(service.create_run(session, project, body))


@router.get("/api/projects/{pid}/estimates", response_model=EstimatesOut, responses=errors(*OWNED))
def run_estimates(
    project: ProjectDep, session: SessionDep, epochs: Annotated[int, Query(ge=1, le=500)] = 5
) -> EstimatesOut:
    """How long a quick run or a fine-tune would take on this project's images, per backbone,
    from the pace earlier runs measured on this server."""
    return estimates.estimates(session, project, epochs)


@router.post(
    "/api/projects/{pid}/estimates/measure",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MeasureOut,
    responses=errors(*OWNED, *WRITE, 404, 409, 503),
)
def measure_pace(body: MeasureIn, project: ProjectDep, session: SessionDep) -> MeasureOut:
    """Before any run: have a worker time ``backbone`` on a few of this project's pictures
    (once per backbone, kept a week), so that the estimates have this server's pace."""
    return estimates.request_measurement(session, project, body.backbone)


@router.get("/api/projects/{pid}/runs", response_model=list[RunOut], responses=errors(*OWNED))
def list_runs(project: ProjectDep, session: SessionDep) -> list[RunOut]:
    return [service.run_out(run) for run in service.list_runs(session, project)]


@router.get("/api/runs/{rid}", response_model=RunOut, responses=errors(*OWNED))
def get_run(run: RunDep) -> RunOut:
    return service.run_out(run)


@router.patch("/api/runs/{rid}", response_model=RunOut, responses=errors(*OWNED, *WRITE))
def rename_run(body: RunPatch, run: RunDep, session: SessionDep) -> RunOut:
    return service.run_out(service.rename_run(session, run, body.name))


@router.delete(
    "/api/runs/{rid}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*OWNED, 403, 409)
)
def delete_run(run: RunDep, session: SessionDep) -> Response:
    """A finished run and everything it made: predictions, model files, heatmaps."""
    service.delete_run(session, run)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/runs/{rid}/rerun",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunOut,
    responses=errors(*OWNED, 403),
)
def rerun(run: RunDep, session: SessionDep) -> RunOut:
    """Train again with the same mode, backbone and options."""
    return service.run_out(service.rerun(session, run))


@router.post("/api/runs/{rid}/deploy", response_model=RunOut, responses=errors(*OWNED, 403, 409))
def deploy_run(run: RunDep, session: SessionDep) -> RunOut:
    """Make this run's model the one ``POST /api/projects/{pid}/predict`` answers with."""
    return service.run_out(service.deploy_run(session, run))


@router.delete("/api/runs/{rid}/deploy", response_model=RunOut, responses=errors(*OWNED, 403))
def undeploy_run(run: RunDep, session: SessionDep) -> RunOut:
    return service.run_out(service.undeploy_run(session, run))


@router.post(
    "/api/projects/{pid}/predict",
    response_model=PredictOut | BatchPredictOut,
    responses=errors(*OWNED, *WRITE, 409),
)
def predict_with_deployed(
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    file: list[UploadFile] = File(min_length=1),
) -> PredictOut | BatchPredictOut:
    """The project's deployed model: a stable URL while the run behind it changes."""
    return predict.predict_uploads(
        service.deployed_classifier_path(session, project), file, settings
    )


@router.get(
    "/api/runs/{rid}/events",
    response_class=EventSourceResponse,
    responses=errors(*OWNED, streaming=True),
)
async def run_events_stream(run: RunDep) -> AsyncIterator[ServerSentEvent]:
    async for event in run_events(run.id):
        yield event


@router.post("/api/runs/{rid}/cancel", response_model=RunOut, responses=errors(*OWNED, 403, 409))
def cancel_run(run: RunDep, session: SessionDep) -> RunOut:
    return service.run_out(service.cancel_run(session, run))


@router.get(
    "/api/runs/{rid}/predictions", response_model=PredictionsOut, responses=errors(*OWNED, 409)
)
def run_predictions(run: RunDep, session: SessionDep) -> PredictionsOut:
    return service.predictions(session, run)


@router.get("/api/runs/{rid}/artifacts", response_model=list[ArtifactOut], responses=errors(*OWNED))
def run_artifacts(run: RunDep) -> list[ArtifactOut]:
    return service.artifacts_out(run)


@router.get(
    "/api/runs/{rid}/artifacts/{fmt}",
    response_class=FileResponse,
    responses={
        200: files_of(sorted(set(MEDIA_TYPES.values())), "the model file"),
        **errors(*OWNED),
    },
)
def download_artifact(fmt: str, run: RunDep) -> FileResponse:
    artifact = service.get_artifact(run, fmt)
    return FileResponse(
        recorded_file(artifact.path),
        media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
        filename=artifact.filename,
        headers={"X-Checksum-SHA256": artifact.sha256},
    )


@router.get("/api/runs/{rid}/usage", response_model=UsageOut, responses=errors(*OWNED, 409))
def run_usage(run: RunDep, request: Request) -> UsageOut:
    """The model's input, and code to run it with onnxruntime (Python, JavaScript, C#) or
    against this server (curl)."""
    return service.usage(run, str(request.base_url))


@router.get(
    "/api/runs/{rid}/model-card",
    response_class=FileResponse,
    responses={200: files_of(["text/markdown"], "the model card"), **errors(*OWNED)},
)
def model_card(run: RunDep) -> FileResponse:
    """What the model was trained on, how well it did, and its limits (Markdown)."""
    return FileResponse(
        service.model_card_path(run),
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="run-{run.id}-MODEL_CARD.md"'},
    )


@router.post(
    "/api/runs/{rid}/predict",
    response_model=PredictOut | BatchPredictOut,
    responses=errors(*OWNED, *WRITE, 409),
)
def predict_images(
    run: RunDep, settings: SettingsDep, file: list[UploadFile] = File(min_length=1)
) -> PredictOut | BatchPredictOut:
    """One ``file`` answers ``{label, probabilities}``; several (or a zip) answer ``results``."""
    return predict.predict_uploads(service.classifier_path(run), file, settings)
