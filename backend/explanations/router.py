from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import FileResponse

from backend.deps import SessionDep
from backend.explanations import service
from backend.explanations.schemas import ExplanationOut
from backend.runs.deps import RunDep

router = APIRouter(prefix="/api/runs/{rid}/explanations", tags=["explanations"])


@router.post("/{iid}", response_model=ExplanationOut, status_code=status.HTTP_202_ACCEPTED)
def request_explanation(
    iid: int, run: RunDep, session: SessionDep, response: Response
) -> ExplanationOut:
    row = service.request_explanation(session, run, iid)
    if row.status == "ready":
        response.status_code = status.HTTP_200_OK
    return service.explanation_out(row)


@router.get("/{iid}", response_model=ExplanationOut)
def get_explanation(iid: int, run: RunDep, session: SessionDep) -> ExplanationOut:
    return service.explanation_out(service.get_explanation(session, run, iid))


@router.get("/{iid}/heatmap")
def heatmap(iid: int, run: RunDep, session: SessionDep) -> FileResponse:
    return FileResponse(
        service.heatmap_path(session, run, iid),
        media_type="image/png",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400"},
    )
