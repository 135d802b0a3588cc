"""Deployable downloads: ONNX, TorchScript and a bundle that runs on a machine without autodl."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.inference.preprocess import Preprocess, load_image
from tests.conftest import ApiUser, make_zip
from tests.factories import tiny_run
from tests.runs.conftest import execute, start_run

pytestmark = pytest.mark.slow


@pytest.fixture
def finished_run(client: TestClient, user: ApiUser, small_project: dict) -> dict:
    run = start_run(client, user, small_project, **tiny_run())
    assert execute(run["id"]) == "succeeded"
    return client.get(f"/api/runs/{run['id']}", headers=user.headers).json()


def _stored(client: TestClient, user: ApiUser, run: dict) -> dict[str, dict]:
    items = client.get(f"/api/runs/{run['id']}/predictions", headers=user.headers).json()["items"]
    return {item["filename"]: item for item in items}


def test_every_format_downloads_with_its_checksum_and_the_bundle_runs_anywhere(
    client: TestClient, user: ApiUser, finished_run: dict, hymenoptera: Path, tmp_path: Path
) -> None:
    run = finished_run
    artifacts = {a["format"]: a for a in run["artifacts"]}
    assert set(artifacts) == {"onnx", "torchscript", "onnx-int8", "bundle"}
    blobs = {}
    for fmt, artifact in artifacts.items():
        response = client.get(artifact["url"], headers=user.headers)
        assert response.status_code == 200
        assert response.headers["content-disposition"].startswith("attachment;")
        assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
        blobs[fmt] = response.content
    stored = _stored(client, user, run)
    labels = run["metrics"]["confusion_matrix"]["labels"]
    # The run's validation pictures, in a folder of their own for the bundle's predict.py.
    pictures = {p.name: p for p in (hymenoptera / "val").rglob("*.jpg")}
    val = [pictures[name] for name in sorted(stored)]
    folder = tmp_path / "val"
    folder.mkdir()
    for path in val:
        shutil.copyfile(path, folder / path.name)

    # TorchScript parity with the run's stored predictions.
    import torch

    files = {"labels": "", "preprocess": ""}
    model = torch.jit.load(io.BytesIO(blobs["torchscript"]), _extra_files=files)
    assert json.loads(files["labels"]) == labels
    preprocess = Preprocess.from_dict(json.loads(files["preprocess"]))
    batch = torch.from_numpy(np.stack([load_image(p, preprocess) for p in val]))
    with torch.no_grad():
        probabilities = model(batch).numpy()
    for path, row in zip(val, probabilities, strict=True):
        expected = stored[path.name]
        assert labels[int(row.argmax())] == expected["predicted_label"]
        for name, p in zip(labels, row, strict=True):
            assert abs(float(p) - expected["probabilities"][name]) < 1e-4

    # The bundle: unpack it into a fresh virtual environment that has only its requirements.
    with zipfile.ZipFile(io.BytesIO(blobs["bundle"])) as archive:
        archive.extractall(tmp_path / "unpacked")
    (root,) = (tmp_path / "unpacked").iterdir()
    assert {p.name for p in root.iterdir()} >= {
        "model.onnx",
        "labels.json",
        "preprocess.json",
        "predict.py",
        "requirements.txt",
        "MODEL_CARD.md",
        "README.md",
    }
    readme = (root / "README.md").read_text()
    assert "python predict.py picture.jpg" in readme and "MODEL_CARD.md" in readme
    card = (root / "MODEL_CARD.md").read_text()
    assert "ants" in card and "bees" in card and "Limits" in card
    assert f"{run['metrics']['accuracy'] * 100:.1f} %" in card

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-r", root / "requirements.txt"],
        check=True,
        timeout=600,
    )
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze"], check=True, capture_output=True, text=True
    ).stdout.lower()
    assert "torch" not in freeze and "autodl" not in freeze
    answer = subprocess.run(
        [python, "predict.py", str(folder), "--json", "--csv", "out.csv"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = json.loads(answer.stdout)
    assert len(results) == len(val) == len(stored) == 20
    for result in results:
        expected = stored[Path(result["file"]).name]
        assert result["label"] == expected["predicted_label"]
        for name, p in result["probabilities"].items():
            assert abs(p - expected["probabilities"][name]) < 1e-4
    assert len((root / "out.csv").read_text().splitlines()) == 21

    check_batch_predict(client, user, run, hymenoptera)


def check_batch_predict(
    client: TestClient, user: ApiUser, finished_run: dict, hymenoptera: Path
) -> None:
    """Several files, or a zip, get one answer per picture and a reason per bad file."""
    pictures = sorted((hymenoptera / "val" / "bees").iterdir())[:3]
    archive = make_zip({**{f"x/{p.name}": p.read_bytes() for p in pictures}, "x/notes.jpg": b"hi"})
    response = client.post(
        f"/api/runs/{finished_run['id']}/predict",
        files=[("file", ("batch.zip", archive, "application/zip"))],
        headers=user.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert [r["filename"] for r in body["results"]] == [f"x/{p.name}" for p in pictures]
    assert body["rejected"] == [
        {"filename": "x/notes.jpg", "reason": body["rejected"][0]["reason"]}
    ]
    assert "not a picture" in body["rejected"][0]["reason"]
    several = client.post(
        f"/api/runs/{finished_run['id']}/predict",
        files=[("file", (p.name, p.read_bytes(), "image/jpeg")) for p in pictures],
        headers=user.headers,
    ).json()
    assert len(several["results"]) == 3


def test_the_int8_download_loads_and_its_accuracy_change_is_recomputed(
    client: TestClient, user: ApiUser, finished_run: dict, hymenoptera: Path, tmp_path: Path
) -> None:
    """The optional int8 copy is a real QDQ graph onnxruntime loads, and the accuracy change
    the run page prints is what both downloads score on the run's validation images."""
    import onnx

    from backend.inference.predictor import OnnxClassifier

    run = finished_run
    artifacts = {a["format"]: a for a in run["artifacts"]}
    files = {}
    for fmt in ("onnx", "onnx-int8"):
        response = client.get(artifacts[fmt]["url"], headers=user.headers)
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == artifacts[fmt]["sha256"]
        files[fmt] = tmp_path / f"{fmt}.onnx"
        files[fmt].write_bytes(response.content)
    ops = {node.op_type for node in onnx.load(str(files["onnx-int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(str(files["onnx"])).graph.node}

    stored = _stored(client, user, run)
    pictures = {p.name: p for p in (hymenoptera / "val").rglob("*.jpg")}
    names = sorted(stored)

    def accuracy(path: Path) -> float:
        answers = OnnxClassifier(path).predict([pictures[name] for name in names])
        hits = [a["label"] == stored[n]["true_label"] for a, n in zip(answers, names, strict=True)]
        return float(np.mean(hits))

    int8, fp32 = accuracy(files["onnx-int8"]), accuracy(files["onnx"])
    report = run["metrics"]["int8"]
    assert report["n_val"] == len(names) == 20
    assert report["accuracy"] == pytest.approx(int8) and report["fp32_accuracy"] == pytest.approx(
        fp32
    )
    change = round(100 * (int8 - fp32), 1)
    assert report["change_points"] == change
    sign = "\u2212" if change < 0 else "+"
    assert (
        f"val accuracy {100 * int8:.1f} % ({sign}{abs(change):.1f} pt vs fp32)" in report["summary"]
    )
    assert report["size_bytes"] == artifacts["onnx-int8"]["size_bytes"]
