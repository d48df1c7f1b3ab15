"""`load_medic`: MEDIC as a `datasets.DatasetDict` in one call, from any of the shapes it is published in."""

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import datasets
import numpy as np

from .builder import (
    BAD_ROW_POLICIES,
    MEDIC_ARCHIVE_URL,
    MedicBuilder,
    medic_features,
    summarize_reasons,
    warn_duplicate_paths,
)
from .errors import MedicDataError
from .labels import MISSING_LABEL, SPLIT_FILES, TASK_LABELS, TASKS


logger = logging.getLogger(__name__)

CONFIG_NAMES = ("all", *TASKS)
SKIPPED_ROWS_FILE = "skipped_rows.jsonl"

# Split names other copies of MEDIC use, mapped to this package's names.
SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation"}

HUB_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def load_medic(
    source: str | None = None,
    name: str = "all",
    split: str | None = None,
    streaming: bool = False,
    *,
    on_bad_row: str = "raise",
    bad_rows_report: str | None = None,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    download_mode: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
):
    """Load MEDIC with the splits `train`, `validation` and `test`, the classes in canonical order.

    Args:
        source (`str`, *optional*):
            One of:

            - a folder laid out like the MEDIC archive: the three `MEDIC_*.tsv` files at any depth, with
              `image_path` relative to their folder;
            - the `MEDIC.tar.gz` archive as a local path or an `http(s)://` URL, read member by member
              without extracting it;
            - a folder of parquet files such as `medic-hf prepare` writes;
            - a Hub dataset repo id such as `QCRI/MEDIC`;
            - `None`, to download the official archive from the MEDIC home page.
        name (`str`, defaults to `"all"`):
            `"all"` gives one `ClassLabel` column per task. A task name (`"damage_severity"`,
            `"informative"`, `"humanitarian"` or `"disaster_types"`) gives that task's labels in a single
            `label` column and leaves out the rows without a label for it.
        split (`str`, *optional*):
            Return only this split.
        streaming (`bool`, defaults to `False`):
            Return `IterableDataset`s that read the source as they are iterated, with the same examples.
        on_bad_row (`str`, defaults to `"raise"`):
            For TSV sources. `"raise"` stops at the first bad row. `"skip"` skips rows with an unknown label,
            a missing or unreadable image, or the wrong number of fields. It logs a count per reason and writes
            the skipped rows as JSON lines to `bad_rows_report`. Unsafe image paths always raise.
        bad_rows_report (`str`, *optional*):
            Where to write the skipped rows. Defaults to `skipped_rows.jsonl` in the prepared cache folder.
        cache_dir (`str`, *optional*):
            Where `datasets` keeps prepared files. Defaults to the `datasets` cache.
        num_proc (`int`, *optional*):
            Threads that decode images to check them (TSV sources), or processes for parquet sources.
        download_mode (`str`, *optional*):
            `"force_redownload"` rebuilds the cache entry.
        revision, token:
            Hub revision and token, for Hub repo ids and `hf://` sources.

    Returns:
        `DatasetDict` or `IterableDatasetDict` (a `Dataset` or `IterableDataset` when `split` is given).
        With `name="all"`: the columns `image_id`, `event_name`, `image_path`, `image` and one `ClassLabel`
        per task, where -1 marks a missing label.

    Raises:
        MedicDataError: a TSV row or a label is invalid. The message names the file, line and value, and the fix.
        FileNotFoundError: `source` does not exist or contains no MEDIC data.
        ConnectionError: the archive could not be downloaded.

    Example:

    ```python
    >>> from medic_hf import load_medic
    >>> medic = load_medic("/data/MEDIC")
    >>> medic["train"].features["disaster_types"].names[:3]
    ['earthquake', 'fire', 'flood']
    >>> humanitarian = load_medic("/data/MEDIC", name="humanitarian", split="train")
    ```
    """
    if name not in CONFIG_NAMES:
        raise ValueError(f"Invalid `name={name!r}`: choose one of {', '.join(CONFIG_NAMES)}.")
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"Invalid `on_bad_row={on_bad_row!r}`: choose one of {', '.join(BAD_ROW_POLICIES)}.")

    kind = source_kind(source)
    if kind in ("tsv folder", "archive", "url"):
        medic = load_from_tsv(
            source, kind, streaming, on_bad_row, bad_rows_report, cache_dir, num_proc, download_mode, revision
        )
    else:
        medic = load_from_parquet(source, streaming, cache_dir, num_proc, download_mode, revision, token)

    if name != "all":
        medic = select_task(medic, name)
    if split is not None:
        if split not in medic:
            raise ValueError(f"Invalid `split={split!r}`: choose one of {', '.join(medic)}.")
        return medic[split]
    return medic


def source_kind(source: str | None) -> str:
    """Classify a source as `"url"`, `"archive"`, `"tsv folder"`, `"parquet folder"` or `"hub"`."""
    if source is None or re.match(r"^https?://", source):
        return "url"
    path = Path(source).expanduser()
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz", ".tar", ".zip")):
            return "archive"
        raise ValueError(f"Unsupported MEDIC source file {source!r}: pass MEDIC.tar.gz, a folder or a Hub repo id.")
    if path.is_dir():
        if next(path.rglob(SPLIT_FILES["train"]), None) is not None:
            return "tsv folder"
        if next(path.rglob("*.parquet"), None) is not None:
            return "parquet folder"
        raise FileNotFoundError(
            f"No MEDIC data in {path}: expected {', '.join(SPLIT_FILES.values())} at any depth, or parquet files "
            "written by `medic-hf prepare`."
        )
    if HUB_REPO_ID.match(source) or source.startswith("hf://"):
        return "hub"
    raise FileNotFoundError(
        f"MEDIC data not found at {source!r}: it is not an existing folder or file, a URL or a Hub repo id. "
        "Pass the folder that contains MEDIC_train.tsv, MEDIC_dev.tsv and MEDIC_test.tsv, MEDIC.tar.gz, or a "
        "folder written by `medic-hf prepare`."
    )


def load_from_tsv(source, kind, streaming, on_bad_row, bad_rows_report, cache_dir, num_proc, download_mode, revision):
    """Build MEDIC from the raw TSV files, in a folder or an archive, with `MedicBuilder`."""
    config_kwargs = {"on_bad_row": on_bad_row}
    if kind == "url":
        config_kwargs["archive_url"] = source or MEDIC_ARCHIVE_URL
        data_dir = None
    else:
        data_dir = str(Path(source).expanduser().resolve())
        config_kwargs["source_fingerprint"] = fingerprint_source(Path(data_dir))
    builder = MedicBuilder(dataset_name="medic", data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    if num_proc:
        builder.num_threads = num_proc

    if streaming:
        return builder.as_streaming_dataset()

    try:
        builder.download_and_prepare(download_mode=download_mode)
    except datasets.exceptions.DatasetGenerationError as error:
        # The builder checks images while it writes, so `datasets` wraps our error. Surface it as it was.
        if isinstance(error.__cause__, MedicDataError):
            raise error.__cause__ from None
        raise
    report_skipped_rows(builder, bad_rows_report)
    medic = builder.as_dataset()
    warn_duplicate_paths({split: dataset["image_path"] for split, dataset in medic.items()})
    return medic


def report_skipped_rows(builder: MedicBuilder, bad_rows_report: str | None) -> None:
    """Write the skipped rows next to the prepared files and to `bad_rows_report`, and log their counts.

    A cached build did not run this time, so its report is read back from the cache folder.
    """
    cached_report = Path(builder.cache_dir) / SKIPPED_ROWS_FILE
    if builder.skipped_rows:
        cached_report.write_text("".join(json.dumps(row) + "\n" for row in builder.skipped_rows))
    if not cached_report.is_file():
        return
    skipped = [json.loads(line) for line in cached_report.read_text().splitlines()]
    report = cached_report
    if bad_rows_report is not None:
        report = Path(bad_rows_report)
        report.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached_report, report)
    logger.warning(
        f"Skipped {len(skipped)} bad row(s) across all splits: {summarize_reasons(skipped)}. Rows listed in {report}"
    )


def load_from_parquet(source, streaming, cache_dir, num_proc, download_mode, revision, token):
    """Load a parquet copy (a local folder or a Hub repo) and align it with the canonical splits and classes."""
    path = Path(source).expanduser()
    dataset = datasets.load_dataset(
        str(path) if path.is_dir() else source,
        streaming=streaming,
        cache_dir=cache_dir,
        num_proc=None if streaming else num_proc,
        download_mode=download_mode,
        revision=revision,
        token=token,
    )
    return align_to_medic(dataset, source)


def align_to_medic(dataset, source: str):
    """Rename splits to `train`/`validation`/`test` and remap each task's labels by class name.

    Copies such as `QCRI/MEDIC` number classes in their own order and call the validation split `dev`. Here
    each label is looked up by its name, in the copy's `ClassLabel` or as a class-name string. It is stored
    as the index of that name in the task's sorted class list, so index `i` always means one class.

    Raises:
        MedicDataError: a task column is missing, has a class name MEDIC does not define, or has integer
            labels without class names to match.
    """
    is_streaming = isinstance(dataset, datasets.IterableDatasetDict)
    splits = {}
    for split_name, split in dataset.items():
        target = SPLIT_ALIASES.get(split_name, split_name)
        if target in splits:
            raise MedicDataError(f"{source} has two splits that both map to {target!r}: rename one of them.")
        splits[target] = align_split(split, source, split_name)
    order = {split: index for index, split in enumerate(SPLIT_FILES)}
    ordered = dict(sorted(splits.items(), key=lambda item: order.get(item[0], len(order))))
    return (datasets.IterableDatasetDict if is_streaming else datasets.DatasetDict)(ordered)


def align_split(split, source: str, split_name: str):
    features = split.features
    if features is None:
        raise MedicDataError(f"{source} split {split_name!r} has no feature types; prepare it with `medic-hf prepare`.")
    missing = [column for column in ("image", *TASKS) if column not in features]
    if missing:
        raise MedicDataError(
            f"{source} split {split_name!r} has no column(s) {', '.join(missing)}; found {', '.join(features)}. "
            "A MEDIC copy needs `image` and one column per task."
        )
    for column in ("image_id", "event_name", "image_path"):
        if column not in features:
            logger.info(f"{source} split {split_name!r} has no `{column}` column: filling it with empty strings.")
            split = split.map(add_empty_column, batched=True, fn_kwargs={"column": column})

    lookups = {task: label_lookup(features[task], task, source, split_name) for task in TASKS}
    split = split.map(remap_labels, batched=True, fn_kwargs={"lookups": lookups})
    extra = [column for column in features if column not in medic_features()]
    if extra:
        logger.warning(f"{source} split {split_name!r}: dropping column(s) MEDIC does not define: {', '.join(extra)}")
        split = split.remove_columns(extra)
    return split.cast(medic_features())


def label_lookup(feature, task: str, source: str, split_name: str) -> dict:
    """Map the copy's label values (class indices or names) to canonical indices, by class name."""
    names = TASK_LABELS[task]
    if isinstance(feature, datasets.ClassLabel):
        copy_names = feature.names
    elif isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        copy_names = None
    else:
        raise MedicDataError(
            f"{source} split {split_name!r}: column `{task}` is {feature}, integers without class names, so its "
            "labels cannot be matched by name. Store it as a ClassLabel or as class-name strings."
        )
    unknown = [name for name in (copy_names or []) if name not in names]
    if unknown:
        raise MedicDataError(
            f"{source} split {split_name!r}: column `{task}` has class name(s) {', '.join(map(repr, unknown))} that "
            f"MEDIC does not define. Valid names: {', '.join(names)}."
        )
    if copy_names is None:
        return {"by_name": {name: index for index, name in enumerate(names)}}
    return {"by_index": np.array([names.index(name) for name in copy_names], dtype=np.int64)}


def add_empty_column(batch: dict, column: str) -> dict:
    return {column: [""] * len(batch["image"])}


def remap_labels(batch: dict, lookups: dict) -> dict:
    for task, lookup in lookups.items():
        values = batch[task]
        if "by_index" in lookup:
            indices = np.asarray([MISSING_LABEL if v is None else v for v in values], dtype=np.int64)
            mapped = np.where(indices >= 0, lookup["by_index"][np.clip(indices, 0, None)], MISSING_LABEL)
            batch[task] = mapped.tolist()
        else:
            batch[task] = [remap_name(value, task, lookup["by_name"]) for value in values]
    return batch


def remap_name(value: str | None, task: str, label2id: dict[str, int]) -> int:
    if value is None or value == "":
        return MISSING_LABEL
    if value not in label2id:
        raise MedicDataError(
            f"Column `{task}` has unknown label {value!r}. Valid labels: {', '.join(label2id)}, or empty for missing."
        )
    return label2id[value]


def select_task(medic, task: str):
    """Turn the `all` layout into one task's: its labels in a `label` column, unlabelled rows left out."""
    others = [other for other in TASKS if other != task]
    medic = medic.filter(lambda labels: [label != MISSING_LABEL for label in labels], input_columns=task, batched=True)
    return medic.remove_columns(others).rename_column(task, "label")


def fingerprint_source(path: Path) -> str:
    """Digest the TSV files' (or the archive's) paths, sizes and modification times.

    The prepared cache stores image paths, not a digest of every image, so replacing an image file in place
    with the same TSV files reuses the cache. Use `download_mode="force_redownload"` after such a change.
    """
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for name in SPLIT_FILES.values() for p in path.rglob(name))
    for file in files:
        stat = file.stat()
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
