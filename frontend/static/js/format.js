// Numbers, sizes and times in the words people use.

export function plural(n, one, many = `${one}s`) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function percent(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return `${(x * 100).toFixed(digits)}%`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/** An estimate, as precise as an estimate is: "15 s", "3 min", "1 h 20 min". */
export function roughDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 60) return `${Math.max(5, Math.ceil(seconds / 5) * 5)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export function ago(iso) {
  if (!iso) return "—";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const steps = [
    [60, "second"], [3600, "minute"], [86400, "hour"], [604800, "day"], [2629800, "week"],
    [31557600, "month"], [Infinity, "year"],
  ];
  let previous = 1;
  for (const [limit, unit] of steps) {
    if (Math.abs(seconds) < limit) return RELATIVE.format(Math.round(seconds / previous), unit);
    previous = limit;
  }
  return "";
}

export function dateTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export const MODE_NAMES = { linear: "Quick", finetune: "Fine-tune", auto: "Auto" };
export const SPLIT_NAMES = { train: "Train", val: "Validation", test: "Test" };

export const STATUS_NAMES = {
  queued: "Queued",
  running: "Running",
  succeeded: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

export const ACTIVE_STATUSES = new Set(["queued", "running"]);

/** Stage identifiers from the worker, said as a person would. Unknown stages are shown as given. */
const STAGE_NAMES = {
  queued: "Waiting for a worker",
  starting: "Starting",
  preparing: "Preparing the pretrained network (a backbone’s first run takes longer)",
  loading: "Loading images",
  loading_images: "Loading images",
  loading_model: "Loading the pretrained network",
  loading_backbone: "Loading the pretrained network",
  splitting: "Splitting train and validation",
  featurizing: "Reading the images with the pretrained network",
  embedding: "Reading the images with the pretrained network",
  training: "Training",
  training_head: "Training the classifier",
  finetuning: "Fine-tuning the network",
  selecting: "Comparing options",
  cross_validation: "Comparing options",
  evaluating: "Measuring accuracy on the validation images",
  exporting: "Exporting the model files",
  done: "Done",
  succeeded: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

export function stageName(stage) {
  if (!stage) return "";
  return STAGE_NAMES[stage] || stage.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
}

/** "Trained as “bees” — now “honey bees”" for each label renamed since the run trained. */
export function renamedWords(run) {
  return Object.entries(run.renamed_labels || {}).map(([trained, now]) => `trained as “${trained}” — now “${now}”`);
}
