"""Real drag-and-drop in the page: a DataTransfer of File objects that carry their folder paths."""

from __future__ import annotations

from pathlib import Path

FIXTURE_URL = "/__browser_test_files__"

BUILD_DATA_TRANSFER = """
async ({url, files}) => {
  const blob = await (await fetch(url)).blob();
  const transfer = new DataTransfer();
  let offset = 0;
  for (const {path, size, type} of files) {
    const name = path.split("/").pop();
    const file = new File([blob.slice(offset, offset + size)], name, {type});
    offset += size;
    // What a dropped folder's files carry; a DataTransfer built by a script has no entries.
    if (path.includes("/")) Object.defineProperty(file, "webkitRelativePath", {value: path});
    transfer.items.add(file);
  }
  return transfer;
}
"""

TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif"}


def drop_files(page, target: str, files: list[tuple[str, bytes]]) -> None:  # type: ignore[no-untyped-def]
    """Drop ``(relative path, bytes)`` pairs onto ``target`` with dragenter, dragover and drop."""
    body = b"".join(data for _, data in files)
    page.route(
        f"**{FIXTURE_URL}",
        lambda route: route.fulfill(body=body, content_type="application/octet-stream"),
    )
    described = [
        {"path": path, "size": len(data), "type": TYPES.get(Path(path).suffix.lower(), "")}
        for path, data in files
    ]
    transfer = page.evaluate_handle(BUILD_DATA_TRANSFER, {"url": FIXTURE_URL, "files": described})
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(target, event, {"dataTransfer": transfer})
    page.unroute(f"**{FIXTURE_URL}")


def dataset_files(root: Path, per_class: int | None = None, top: str = "hymenoptera") -> list[tuple[str, bytes]]:
    """``top/train/ants/x.jpg``-style paths, as when the dataset folder itself is dropped."""
    files = []
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            paths = sorted((root / split / label).iterdir())
            for path in paths[:per_class] if per_class else paths:
                files.append((f"{top}/{split}/{label}/{path.name}", path.read_bytes()))
    return files
