"""`medic-hf prepare` and `medic-hf push-dataset`: write MEDIC as a self-describing parquet folder and upload it.

The folder loads with plain `datasets.load_dataset(folder_or_repo)`: parquet shards named
`data/<split>-NNNNN-of-NNNNN.parquet` (so the split names are found), the features embedded in each
shard's schema, and a dataset card `README.md` whose YAML lists the configs, features and split sizes.
"""

import argparse
import json
import logging
import math
import posixpath
import shutil
import sys
from collections import Counter
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from .builder import MEDIC_CITATION, MEDIC_HOMEPAGE, MEDIC_LICENSE, summarize_reasons
from .errors import MedicUsageError
from .images import encode_jpeg
from .labels import MISSING_LABEL, TASK_LABELS, TASKS
from .loading import SKIPPED_ROWS_FILE, load_medic, source_kind


logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).parent / "templates" / "dataset_card.md"

# Stored images keep at most this many pixels on their shorter side by default. 256 is the side the MEDIC
# authors resize to before their 224-pixel crops, and `benchmarks/data_loading.py` measures how much
# faster such images decode than the originals.
DEFAULT_MAX_SHORT_SIDE = 256
DEFAULT_MAX_SHARD_MB = 500
INCOMPLETE_SUFFIX = ".incomplete"


def prepare_dataset(
    source: str | None,
    output_dir: str | Path,
    *,
    max_short_side: int | None = DEFAULT_MAX_SHORT_SIDE,
    num_proc: int | None = None,
    on_bad_row: str = "raise",
    overwrite: bool = False,
    max_shard_mb: int = DEFAULT_MAX_SHARD_MB,
    cache_dir: str | None = None,
) -> Path:
    """Write MEDIC from any `load_medic` source to `output_dir` as parquet shards with a dataset card.

    The folder is written under `<output_dir>.incomplete` and renamed only once complete, so an interrupted
    run never leaves a folder that looks finished. Running again removes the incomplete folder and starts over.

    Args:
        source: any source `load_medic` accepts.
        output_dir: the folder to create.
        max_short_side: re-encode each image as a JPEG with its shorter side at most this many pixels.
            `None` stores the original files byte for byte.
        num_proc: processes that re-encode images.
        on_bad_row: `"raise"` or `"skip"`, as in `load_medic`. Skipped rows are listed in the folder.
        overwrite: replace an existing `output_dir`.
        max_shard_mb: target size of one parquet shard, in megabytes.
        cache_dir: the `datasets` cache to prepare the source in.

    Returns:
        The path of the finished folder.
    """
    output_dir = Path(output_dir)
    if max_short_side is not None and max_short_side < 1:
        raise MedicUsageError(f"Invalid `max_short_side={max_short_side}`: give a positive pixel count or None.")
    if output_dir.exists() and not overwrite:
        raise MedicUsageError(f"{output_dir} already exists. Choose another folder or pass `--overwrite`.")
    staging = output_dir.with_name(output_dir.name + INCOMPLETE_SUFFIX)
    if staging.exists():
        logger.warning(f"Removing {staging}, left by an interrupted run, and starting over.")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    medic = load_medic(
        source,
        on_bad_row=on_bad_row,
        bad_rows_report=str(staging / SKIPPED_ROWS_FILE) if on_bad_row == "skip" else None,
        cache_dir=cache_dir,
        num_proc=num_proc,
    )
    split_sizes = {}
    for split, dataset in medic.items():
        encoded = encode_split(dataset, split, max_short_side, num_proc)
        write_shards(encoded, staging / "data", split, max_shard_mb)
        split_sizes[split] = len(encoded)

    card = create_dataset_card(medic, source, max_short_side, staging)
    card.save(staging / "README.md")

    if output_dir.exists():
        shutil.rmtree(output_dir)
    staging.rename(output_dir)
    logger.info(f"Wrote {sum(split_sizes.values())} examples ({split_sizes}) to {output_dir}")
    if (output_dir / SKIPPED_ROWS_FILE).is_file():
        logger.warning(f"The skipped rows are listed in {output_dir / SKIPPED_ROWS_FILE}")
    return output_dir


def encode_split(dataset: datasets.Dataset, split: str, max_short_side: int | None, num_proc: int | None):
    """Replace each image by its bytes: the original file, or a JPEG re-encoded at `max_short_side`."""
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    action = "Copying" if max_short_side is None else f"Re-encoding (short side <= {max_short_side} px)"
    encoded = dataset.map(
        encode_images,
        batched=True,
        batch_size=64,
        fn_kwargs={"max_short_side": max_short_side},
        num_proc=num_proc,
        desc=f"{action} {split} images",
    )
    return encoded.cast_column("image", datasets.Image())


def encode_images(batch: dict, max_short_side: int | None) -> dict:
    images = []
    for value, image_path in zip(batch["image"], batch["image_path"]):
        data = value["bytes"] if value["bytes"] is not None else Path(value["path"]).read_bytes()
        name = posixpath.basename(image_path)
        if max_short_side is not None:
            data = encode_jpeg(data, max_short_side)
            name = posixpath.splitext(name)[0] + ".jpg"
        images.append({"bytes": data, "path": name})
    return {"image": images}


def write_shards(dataset: datasets.Dataset, data_dir: Path, split: str, max_shard_mb: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, math.ceil(dataset.data.nbytes / (max_shard_mb * 1024 * 1024)))
    for index in range(num_shards):
        shard = dataset.shard(num_shards, index, contiguous=True)
        shard.to_parquet(str(data_dir / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"))


def create_dataset_card(medic: datasets.DatasetDict, source: str | None, max_short_side: int | None, folder: Path):
    """Build the card: YAML configs, features and split sizes, then the tasks, class counts, source and citation."""
    def data_files() -> list[dict]:
        # A new list per config, so the YAML repeats it instead of using an anchor and alias.
        return [{"split": split, "path": f"data/{split}-*.parquet"} for split in medic]

    configs = [{"config_name": "all", "default": True, "data_files": data_files()}]
    for task in TASKS:
        # One task per config: its ClassLabel column only, and only rows that have a label for it.
        configs.append(
            {
                "config_name": task,
                "data_files": data_files(),
                "columns": ["image_id", "event_name", "image_path", "image", task],
                "filters": [[task, ">=", 0]],
            }
        )
    features = next(iter(medic.values())).features
    card_data = DatasetCardData(
        license=MEDIC_LICENSE,
        task_categories=["image-classification"],
        pretty_name="MEDIC",
        size_categories=[size_category(sum(len(split) for split in medic.values()))],
        tags=["disaster-response", "crisis-informatics", "multi-task", "social-media"],
        configs=configs,
        dataset_info={
            "config_name": "all",
            "features": features._to_yaml_list(),
            "splits": [
                {
                    "name": split,
                    "num_bytes": sum(f.stat().st_size for f in (folder / "data").glob(f"{split}-*.parquet")),
                    "num_examples": len(dataset),
                }
                for split, dataset in medic.items()
            ],
        },
    )

    splits = list(medic)
    counts = {split: {task: Counter(dataset[task]) for task in TASKS} for split, dataset in medic.items()}
    class_counts = {
        task: [
            {"name": name, "counts": [counts[split][task][index] for split in splits]}
            for index, name in [*enumerate(names), (MISSING_LABEL, "(no label)")]
        ]
        for task, names in TASK_LABELS.items()
    }
    skipped_file = folder / SKIPPED_ROWS_FILE
    skipped = []
    if skipped_file.is_file():
        skipped = [json.loads(line) for line in skipped_file.read_text().splitlines()]
    if max_short_side is None:
        image_storage = "Images are the original files, byte for byte."
    else:
        image_storage = (
            f"Images were re-encoded as JPEG (quality 90), upright and in RGB, with the shorter side at most "
            f"{max_short_side} pixels; smaller images kept their size."
        )
    return DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        repo_id="<this folder or repo id>",
        source=describe_source(source),
        official_source=source is None or source_kind(source) in ("hub", "url"),
        image_storage=image_storage,
        skipped=len(skipped),
        skipped_reasons=summarize_reasons(skipped) if skipped else "",
        homepage=MEDIC_HOMEPAGE,
        task_labels=TASK_LABELS,
        splits=splits,
        class_counts=class_counts,
        citation=MEDIC_CITATION.strip(),
    )


def describe_source(source: str | None) -> str:
    if source is None:
        return "the official MEDIC archive"
    return f"`{Path(source).name if Path(source).exists() else source}`"


def size_category(count: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < limit:
            return label
    return "n>1M"


def push_dataset(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload MEDIC prepared with medic_hf",
):
    """Upload a folder written by `prepare_dataset` to a Hub dataset repo, creating the repo if needed."""
    folder = Path(folder)
    if folder.name.endswith(INCOMPLETE_SUFFIX) or not (folder / "README.md").is_file():
        raise MedicUsageError(
            f"{folder} is not a finished `medic-hf prepare` folder (no README.md, or an incomplete run). "
            "Run `medic-hf prepare` to completion first."
        )
    if not list((folder / "data").glob("*.parquet")):
        raise MedicUsageError(f"{folder}/data has no parquet files. Run `medic-hf prepare` to completion first.")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo.repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo.repo_id,
        repo_type="dataset",
        revision=revision,
        commit_message=commit_message,
    )


def prepare_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="medic-hf prepare",
        description="Write MEDIC as parquet shards with a dataset card, loadable with datasets.load_dataset(OUT_DIR).",
    )
    parser.add_argument("source", help="MEDIC folder, MEDIC.tar.gz (path or URL), parquet folder or Hub repo id.")
    parser.add_argument("output_dir", help="Folder to create.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--max_short_side",
        type=int,
        default=DEFAULT_MAX_SHORT_SIDE,
        help=f"Re-encode images as JPEG with the shorter side at most this many pixels (default: {DEFAULT_MAX_SHORT_SIDE}).",
    )
    size.add_argument("--keep_original", action="store_true", help="Store the original image files unchanged.")
    parser.add_argument("--num_proc", type=int, default=None, help="Processes that re-encode images (default: 1).")
    parser.add_argument(
        "--on_bad_row", choices=("raise", "skip"), default="raise", help="Stop at a bad row, or skip and list it."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace OUT_DIR if it exists.")
    parser.add_argument(
        "--max_shard_mb", type=int, default=DEFAULT_MAX_SHARD_MB, help="Target parquet shard size in MB (default: 500)."
    )
    parser.add_argument("--cache_dir", default=None, help="datasets cache folder for reading the source.")
    args = parser.parse_args(argv)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    output_dir = prepare_dataset(
        args.source,
        args.output_dir,
        max_short_side=None if args.keep_original else args.max_short_side,
        num_proc=args.num_proc,
        on_bad_row=args.on_bad_row,
        overwrite=args.overwrite,
        max_shard_mb=args.max_shard_mb,
        cache_dir=args.cache_dir,
    )
    print(f"Prepared MEDIC in {output_dir}")


def push_dataset_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="medic-hf push-dataset", description="Upload a folder written by `medic-hf prepare` to the Hub."
    )
    parser.add_argument("folder", help="Folder written by `medic-hf prepare`.")
    parser.add_argument("repo_id", help="Dataset repo to upload to, e.g. my-org/medic.")
    parser.add_argument("--private", action="store_true", help="Create the repo as private.")
    parser.add_argument("--revision", default=None, help="Branch to upload to (created if missing).")
    parser.add_argument("--token", default=None, help="Hub token (default: the one saved by `hf auth login`).")
    args = parser.parse_args(argv)
    commit = push_dataset(args.folder, args.repo_id, private=args.private, revision=args.revision, token=args.token)
    print(f"Uploaded {args.folder} to {getattr(commit, 'commit_url', args.repo_id)}", file=sys.stdout)
