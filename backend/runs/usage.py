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
    """What code outside autodl needs to feed the exported ONNX classifier: each of its
    inputs (one per backbone: an ensemble has several) with its own preprocessing."""

    labels: list[str]
    inputs: list[tuple[str, Preprocess]]
    onnx_filename: str

    @property
    def input_name(self) -> str:
        return self.inputs[0][0]

    @property
    def preprocess(self) -> Preprocess:
        return self.inputs[0][1]


def _floats(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


def _python_input(name: str, pp: Preprocess) -> str:
    resample = _PIL.get(pp.interpolation, "BICUBIC")
    return (
        f'    {{"name": {json.dumps(name)}, "resize": {pp.resize_size}, "size": {pp.input_size}, '
        f'"resample": Image.Resampling.{resample},\n'
        f'     "mean": ({_floats(pp.mean)}), "std": ({_floats(pp.std)})}},'
    )


def python_onnx(facts: ModelFacts) -> str:
    """Python with onnxruntime, Pillow and numpy; the preprocessing autodl uses, once per
    input of the model."""
    inputs = "\n".join(_python_input(name, pp) for name, pp in facts.inputs)
    several = len(facts.inputs) > 1
    about = (
        f"# The model combines {len(facts.inputs)} backbones: each input takes the picture "
        "its own way."
        if several
        else "# The model's input and how a picture becomes it."
    )
    return f'''# pip install onnxruntime pillow numpy
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

LABELS = {json.dumps(facts.labels, ensure_ascii=False)}
{about}
# Shorter side to "resize" px, the centre "size" px square, [0, 1], then (x - mean) / std.
INPUTS = [
{inputs}
]
session = ort.InferenceSession("{facts.onnx_filename}", providers=["CPUExecutionProvider"])


def preprocess(path, spec):
    """The picture at ``path`` as one input: an array (1, 3, size, size)."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = image.size
    resize, crop = spec["resize"], spec["size"]
    size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    image = image.resize(size, spec["resample"])
    left = round((size[0] - crop) / 2)
    top = round((size[1] - crop) / 2)
    image = image.crop((left, top, left + crop, top + crop))
    mean = np.array(spec["mean"], dtype=np.float32)
    std = np.array(spec["std"], dtype=np.float32)
    x = (np.asarray(image, dtype=np.float32) / 255 - mean) / std
    return x.transpose(2, 0, 1)[np.newaxis]


feeds = {{spec["name"]: preprocess("picture.jpg", spec) for spec in INPUTS}}
probabilities = session.run(None, feeds)[0][0]
best = int(probabilities.argmax())
print(LABELS[best], float(probabilities[best]))
'''


def javascript_onnx(facts: ModelFacts) -> str:
    """The browser with onnxruntime-web: a canvas does the resize and the crop, once per
    input of the model."""
    inputs = "\n".join(
        f"  {{ name: {json.dumps(name)}, size: {pp.input_size}, resize: {pp.resize_size}, "
        f"mean: [{_floats(pp.mean)}], std: [{_floats(pp.std)}] }},"
        for name, pp in facts.inputs
    )
    return f"""// npm install onnxruntime-web   (or serve ort.min.js yourself)
import * as ort from "onnxruntime-web";

const LABELS = {json.dumps(facts.labels, ensure_ascii=False)};
// Each input of the model: shorter side to resize px, the centre size px square, normalised.
const INPUTS = [
{inputs}
];
const session = await ort.InferenceSession.create("{facts.onnx_filename}");

function preprocess(image, {{ size, resize, mean, std }}) {{
  const scale = resize / Math.min(image.naturalWidth, image.naturalHeight);
  const w = image.naturalWidth * scale;
  const h = image.naturalHeight * scale;
  const canvas = new OffscreenCanvas(size, size);
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(image, (size - w) / 2, (size - h) / 2, w, h);
  const rgba = context.getImageData(0, 0, size, size).data;
  const data = new Float32Array(3 * size * size);
  for (let i = 0; i < size * size; i += 1) {{
    for (let c = 0; c < 3; c += 1) {{
      data[c * size * size + i] = (rgba[i * 4 + c] / 255 - mean[c]) / std[c];
    }}
  }}
  return new ort.Tensor("float32", data, [1, 3, size, size]);
}}

export async function classify(image) {{  // an <img> that has loaded
  const feeds = Object.fromEntries(INPUTS.map((input) => [input.name, preprocess(image, input)]));
  const output = await session.run(feeds);
  const probabilities = Array.from(output[session.outputNames[0]].data);
  const best = probabilities.indexOf(Math.max(...probabilities));
  return {{ label: LABELS[best], probability: probabilities[best] }};
}}
"""


def csharp_onnx(facts: ModelFacts) -> str:
    """.NET with Microsoft.ML.OnnxRuntime and SixLabors.ImageSharp, once per input."""
    labels = ", ".join(json.dumps(label, ensure_ascii=False) for label in facts.labels)
    inputs = "\n".join(
        f"    new({json.dumps(name)}, {pp.input_size}, {pp.resize_size}, "
        f"KnownResamplers.{_IMAGESHARP.get(pp.interpolation, 'Bicubic')},\n"
        f"        new[] {{ {', '.join(f'{v:.6g}f' for v in pp.mean)} }}, "
        f"new[] {{ {', '.join(f'{v:.6g}f' for v in pp.std)} }}),"
        for name, pp in facts.inputs
    )
    return f"""// dotnet add package Microsoft.ML.OnnxRuntime
// dotnet add package SixLabors.ImageSharp
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using SixLabors.ImageSharp.Processing.Processors.Transforms;

string[] labels = {{ {labels} }};
// Each input of the model: shorter side to Resize px, the centre Size px square, normalised.
Input[] inputs = {{
{inputs}
}};

DenseTensor<float> Preprocess(string path, Input spec)
{{
    using var image = Image.Load<Rgb24>(path);
    image.Mutate(x => x.AutoOrient().Resize(new ResizeOptions {{
        Size = new Size(spec.Resize, spec.Resize), Mode = ResizeMode.Min,
        Sampler = spec.Sampler }}));
    var crop = new Rectangle((image.Width - spec.Size) / 2, (image.Height - spec.Size) / 2,
        spec.Size, spec.Size);
    image.Mutate(x => x.Crop(crop));
    var tensor = new DenseTensor<float>(new[] {{ 1, 3, spec.Size, spec.Size }});
    for (int y = 0; y < spec.Size; y++)
        for (int x = 0; x < spec.Size; x++)
        {{
            var p = image[x, y];
            tensor[0, 0, y, x] = (p.R / 255f - spec.Mean[0]) / spec.Std[0];
            tensor[0, 1, y, x] = (p.G / 255f - spec.Mean[1]) / spec.Std[1];
            tensor[0, 2, y, x] = (p.B / 255f - spec.Mean[2]) / spec.Std[2];
        }}
    return tensor;
}}

using var session = new InferenceSession("{facts.onnx_filename}");
var feed = inputs
    .Select(i => NamedOnnxValue.CreateFromTensor(i.Name, Preprocess("picture.jpg", i)))
    .ToList();
using var results = session.Run(feed);
float[] probabilities = results.First().AsEnumerable<float>().ToArray();
int best = Array.IndexOf(probabilities, probabilities.Max());
Console.WriteLine($"{{labels[best]}} {{probabilities[best]:P1}}");

record Input(string Name, int Size, int Resize, IResampler Sampler, float[] Mean, float[] Std);
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


def bundle_readme(facts: ModelFacts, *, project: str, run_id: int, backbone: str) -> str:
    """README.md of the downloaded zip: what is inside, how to run it, and the code to run
    it from your own Python (every input of an ensemble fed its own way)."""
    pp = facts.preprocess
    code = f"""
## In your own Python code

```python
{python_onnx(facts).rstrip()}
```

The run page of autodl has the same for JavaScript (onnxruntime-web) and C#.
"""
    labels = "\n".join(f"{i}. {label}" for i, label in enumerate(facts.labels))
    shapes = ", ".join(
        f"`{name}` float32 `(N, 3, {p.input_size}, {p.input_size})`" for name, p in facts.inputs
    )
    ways = "\n".join(
        f"- `{name}`: shorter side resized to {p.resize_size} px ({p.interpolation}); the "
        f"centre {p.input_size} x {p.input_size} square; mean ({_floats(p.mean)}), "
        f"std ({_floats(p.std)})."
        for name, p in facts.inputs
    )
    plural = "Inputs" if len(facts.inputs) > 1 else "Input"
    several = (
        f"""

The model combines {len(facts.inputs)} backbones; each input takes the picture its own way
(`inputs.json`):

{ways}"""
        if len(facts.inputs) > 1
        else ""
    )
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

- `model.onnx`: the network and its classifier in one ONNX graph. {plural}
  {shapes}; output: one probability per label.
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
({_floats(pp.std)}); channels first.{several}

{code}"""
