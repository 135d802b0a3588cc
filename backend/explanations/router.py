from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import FileResponse

from backend.deps import SessionDep
from backend.explanations import service
from backend.explanations.schemas import ExplanationOut
from backend.runs.deps import RunDep
from backend.schemas import OWNED, PathId, errors, files_of

router = APIRouter(prefix="/api/runs/{rid}/explanations", tags=["explanations"])


@router.post(
    "/{iid}",
    response_model=ExplanationOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": ExplanationOut, "description": "already made"},
        **errors(*OWNED, 403, 409),
    },
)
def request_explanation(
    iid: PathId, run: RunDep, session: SessionDep, response: Response
) -> ExplanationOut:
    row = service.request_explanation(session, run, iid)
    if row.status == "ready":
        response.status_code = status.HTTP_200_OK
    return service.explanation_out(row)


@router.get("/{iid}", response_model=ExplanationOut, responses=errors(*OWNED))
def get_explanation(iid: PathId, run: RunDep, session: SessionDep) -> ExplanationOut:
    return service.explanation_out(service.get_explanation(session, run, iid))


@router.get(
    "/{iid}/heatmap",
    response_class=FileResponse,
    responses={200: files_of(["image/png"], "the heatmap"), **errors(*OWNED)},
)
def heatmap(iid: PathId, run: RunDep, session: SessionDep) -> FileResponse:
    return FileResponse(
        service.heatmap_path(session, run, iid),
        media_type="image/png",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400"},
    )
