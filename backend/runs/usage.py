"""How to run a trained model elsewhere: code that a person copies from the run page and the
README.md inside the bundle, written from the model's own facts (labels, preprocessing)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from backend.inference.preprocess import Preprocess

# What each of PIL's, the browser canvas's and ImageSharp's resamplers is called.
_PIL = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest": "NEAREST", "lanczos": "LANCZOS"}
_IMAGESHARP = {"bicubic": "Bicubic", "bilinear": "Triangle", "nearest": "NearestNeighbor"}


@dataclass(frozen=True)
class ModelFacts:
    """What code outside autodl needs to feed the exported ONNX classifier."""

    labels: list[str]
    preprocess: Preprocess
    input_name: str
    onnx_filename: str


def _floats(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


def python_onnx(facts: ModelFacts) -> str:
    """Python with onnxruntime, Pillow and numpy; the preprocessing autodl uses."""
    pp = facts.preprocess
    return f'''# pip install onnxruntime pillow numpy
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

LABELS = {json.dumps(facts.labels, ensure_ascii=False)}
MEAN = np.array([{_floats(pp.mean)}], dtype=np.float32)
STD = np.array([{_floats(pp.std)}], dtype=np.float32)
session = ort.InferenceSession("{facts.onnx_filename}", providers=["CPUExecutionProvider"])


def preprocess(path):
    """Shorter side to {pp.resize_size} px, centre {pp.input_size} px square, normalised."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = image.size
    size = (({pp.resize_size}, int({pp.resize_size} * h / w)) if w <= h
            else (int({pp.resize_size} * w / h), {pp.resize_size}))
    image = image.resize(size, Image.Resampling.{_PIL.get(pp.interpolation, "BICUBIC")})
    left = round((size[0] - {pp.input_size}) / 2)
    top = round((size[1] - {pp.input_size}) / 2)
    image = image.crop((left, top, left + {pp.input_size}, top + {pp.input_size}))
    x = (np.asarray(image, dtype=np.float32) / 255 - MEAN) / STD
    return x.transpose(2, 0, 1)[np.newaxis]  # (1, 3, {pp.input_size}, {pp.input_size})


probabilities = session.run(None, {{"{facts.input_name}": preprocess("picture.jpg")}})[0][0]
best = int(probabilities.argmax())
print(LABELS[best], float(probabilities[best]))
'''


def javascript_onnx(facts: ModelFacts) -> str:
    """The browser with onnxruntime-web: a canvas does the resize and the crop."""
    pp = facts.preprocess
    return f"""// npm install onnxruntime-web   (or serve ort.min.js yourself)
import * as ort from "onnxruntime-web";

const LABELS = {json.dumps(facts.labels, ensure_ascii=False)};
const MEAN = [{_floats(pp.mean)}];
const STD = [{_floats(pp.std)}];
const SIZE = {pp.input_size};
const RESIZE = {pp.resize_size};
const session = await ort.InferenceSession.create("{facts.onnx_filename}");

function preprocess(image) {{
  // Shorter side to RESIZE px, then the centre SIZE x SIZE square.
  const scale = RESIZE / Math.min(image.naturalWidth, image.naturalHeight);
  const w = image.naturalWidth * scale;
  const h = image.naturalHeight * scale;
  const canvas = new OffscreenCanvas(SIZE, SIZE);
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(image, (SIZE - w) / 2, (SIZE - h) / 2, w, h);
  const rgba = context.getImageData(0, 0, SIZE, SIZE).data;
  const data = new Float32Array(3 * SIZE * SIZE);
  for (let i = 0; i < SIZE * SIZE; i += 1) {{
    for (let c = 0; c < 3; c += 1) {{
      data[c * SIZE * SIZE + i] = (rgba[i * 4 + c] / 255 - MEAN[c]) / STD[c];
    }}
  }}
  return new ort.Tensor("float32", data, [1, 3, SIZE, SIZE]);
}}

export async function classify(image) {{  // an <img> that has loaded
  const output = await session.run({{ "{facts.input_name}": preprocess(image) }});
  const probabilities = Array.from(Object.values(output)[0].data);
  const best = probabilities.indexOf(Math.max(...probabilities));
  return {{ label: LABELS[best], probability: probabilities[best] }};
}}
"""


def csharp_onnx(facts: ModelFacts) -> str:
    """.NET with Microsoft.ML.OnnxRuntime and SixLabors.ImageSharp."""
    pp = facts.preprocess
    labels = ", ".join(json.dumps(label, ensure_ascii=False) for label in facts.labels)
    return f"""// dotnet add package Microsoft.ML.OnnxRuntime
// dotnet add package SixLabors.ImageSharp
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

string[] labels = {{ {labels} }};
float[] mean = {{ {", ".join(f"{v:.6g}f" for v in pp.mean)} }};
float[] std = {{ {", ".join(f"{v:.6g}f" for v in pp.std)} }};
const int Size = {pp.input_size};
const int Resize = {pp.resize_size};

using var image = Image.Load<Rgb24>("picture.jpg");
// Shorter side to Resize px, then the centre Size x Size square.
image.Mutate(x => x.AutoOrient().Resize(new ResizeOptions {{
    Size = new Size(Resize, Resize), Mode = ResizeMode.Min,
    Sampler = KnownResamplers.{_IMAGESHARP.get(pp.interpolation, "Bicubic")} }}));
var crop = new Rectangle((image.Width - Size) / 2, (image.Height - Size) / 2, Size, Size);
image.Mutate(x => x.Crop(crop));
var input = new DenseTensor<float>(new[] {{ 1, 3, Size, Size }});
for (int y = 0; y < Size; y++)
    for (int x = 0; x < Size; x++)
    {{
        var p = image[x, y];
        input[0, 0, y, x] = (p.R / 255f - mean[0]) / std[0];
        input[0, 1, y, x] = (p.G / 255f - mean[1]) / std[1];
        input[0, 2, y, x] = (p.B / 255f - mean[2]) / std[2];
    }}

using var session = new InferenceSession("{facts.onnx_filename}");
var feed = new[] {{ NamedOnnxValue.CreateFromTensor("{facts.input_name}", input) }};
using var results = session.Run(feed);
float[] probabilities = results.First().AsEnumerable<float>().ToArray();
int best = Array.IndexOf(probabilities, probabilities.Max());
Console.WriteLine($"{{labels[best]}} {{probabilities[best]:P1}}");
"""


def curl_hosted(run_url: str, project_url: str) -> str:
    """The hosted endpoints, with an API token made on the page (or by the CLI)."""
    return f"""# An API token: "Make an API token" on the run page, or POST /api/auth/tokens
export AUTODL_TOKEN=...

# This run's model:
curl -H "Authorization: Bearer $AUTODL_TOKEN" -F file=@picture.jpg {run_url}

# The project's deployed model (stays the same URL when you deploy another run):
curl -H "Authorization: Bearer $AUTODL_TOKEN" -F file=@picture.jpg {project_url}

# Several pictures at once (or one .zip): an answer per picture under "results"
curl -H "Authorization: Bearer $AUTODL_TOKEN" -F file=@a.jpg -F file=@b.jpg {project_url}
"""


def bundle_readme(
    facts: ModelFacts, *, project: str, run_id: int, backbone: str, own_code: bool = True
) -> str:
    """README.md of the downloaded zip: what is inside and how to run it (and, for a model
    of one input, the code to run it from your own Python)."""
    pp = facts.preprocess
    code = (
        f"""
## In your own Python code

```python
{python_onnx(facts).rstrip()}
```

The run page of autodl has the same for JavaScript (onnxruntime-web) and C#.
"""
        if own_code
        else """
## In your own code

This model combines several backbones, each with its own input and preprocessing
(inputs.json): call it through predict.py, which feeds each input its own way.
"""
    )
    labels = "\n".join(f"{i}. {label}" for i, label in enumerate(facts.labels))
    return f"""# {project}: image classifier (autodl run #{run_id})

A {backbone} classifier for {len(facts.labels)} labels, exported from autodl. It runs on
any machine with Python 3.10+; no autodl server and no GPU are needed.

## Run it

```sh
pip install -r requirements.txt
python predict.py picture.jpg             # one picture: the label and its probability
python predict.py pictures/ --top 2       # every picture in a folder
python predict.py pictures/ --json        # machine-readable
python predict.py pictures/ --csv out.csv # a spreadsheet of the answers
```

## What is inside

- `model.onnx`: the network and its classifier in one ONNX graph. Input `{facts.input_name}`:
  float32 `(N, 3, {pp.input_size}, {pp.input_size})`; output: one probability per label.
- `labels.json`: the label of each output, in order.
- `preprocess.json`: how a picture becomes the input (below).
- `predict.py`, `autodl_preprocess.py`: the command above, with the exact preprocessing
  the server used.
- `requirements.txt`: onnxruntime, Pillow, numpy.
- `MODEL_CARD.md`: what the model was trained on, how well it did, and its limits. Read it
  before relying on the answers.

Labels, in output order:

{labels}

## Preprocessing

Upright (EXIF orientation applied) RGB; shorter side resized to {pp.resize_size} px
({pp.interpolation}); the centre {pp.input_size} x {pp.input_size} square; values scaled to
[0, 1], then `(x - mean) / std` per channel with mean ({_floats(pp.mean)}) and std
({_floats(pp.std)}); channels first.

{code}"""
