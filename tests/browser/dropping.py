"""Real drag-and-drop in the page: a DataTransfer of File objects that carry their folder paths."""

from __future__ import annotations

from pathlib import Path

# Files reach the page through a hidden file input (the browser reads them from disk, nothing
# crosses the DevTools pipe); the drop then carries those File objects.
ADD_INPUT = """() => {
  const input = document.createElement("input");
  input.type = "file";
  input.multiple = true;
  input.id = "__test_files";
  input.hidden = true;
  document.body.append(input);
}"""

BUILD_DATA_TRANSFER = """(paths) => {
  const input = document.getElementById("__test_files");
  const transfer = new DataTransfer();
  Array.from(input.files).forEach((file, i) => {
    // What a dropped folder's files carry; a DataTransfer built by a script has no entries.
    const path = paths[i];
    if (path.includes("/")) Object.defineProperty(file, "webkitRelativePath", {value: path});
    transfer.items.add(file);
  });
  input.remove();
  return transfer;
}"""


def drop_files(page, target: str, files: list[tuple[str, Path]]) -> None:  # type: ignore[no-untyped-def]
    """Drop ``(relative path, file on disk)`` pairs onto ``target``: dragenter, dragover, drop."""
    page.evaluate(ADD_INPUT)
    page.set_input_files("#__test_files", [str(path) for _, path in files])
    transfer = page.evaluate_handle(BUILD_DATA_TRANSFER, [relative for relative, _ in files])
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(target, event, {"dataTransfer": transfer})


def dataset_files(
    root: Path, per_class: int | None = None, top: str = "hymenoptera"
) -> list[tuple[str, Path]]:
    """``top/train/ants/x.jpg``-style paths, as when the dataset folder itself is dropped."""
    files = []
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            paths = sorted((root / split / label).iterdir())[:per_class]
            files += [(f"{top}/{split}/{label}/{path.name}", path) for path in paths]
    return files
