"""Every table, imported in one place for Alembic and the worker."""

from backend.auth.models import AccountLink, ApiToken, User
from backend.explanations.models import Explanation
from backend.health.models import HealthReport, ImageEdit
from backend.images.models import Image, UploadBatch
from backend.projects.models import Label, Project
from backend.runs.models import Artifact, Prediction, Run

__all__ = [
    "AccountLink",
    "ApiToken",
    "Artifact",
    "Explanation",
    "HealthReport",
    "Image",
    "ImageEdit",
    "Label",
    "Prediction",
    "Project",
    "Run",
    "UploadBatch",
    "User",
]
