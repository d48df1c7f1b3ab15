"""A `datasets` builder that reads MEDIC from the official archive or from a folder laid out like it.

datasets 4 and later no longer run loading scripts, so the builder lives in the package and
`medic_hf.load_medic` calls it. The archive contains `MEDIC_train.tsv`, `MEDIC_dev.tsv` and `MEDIC_test.tsv`
with one row per image, and `image_path` is relative to the folder that contains them.
"""

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
from PIL import Image

from .errors import MedicDataError
from .labels import MISSING_LABEL, SPLIT_FILES, TASK_LABELS, TASKS, TSV_COLUMNS


logger = datasets.logging.get_logger(__name__)

MEDIC_HOMEPAGE = "https://crisisnlp.qcri.org/medic/"
MEDIC_ARCHIVE_URL = "https://crisisnlp.qcri.org/data/medic/MEDIC.tar.gz"
MEDIC_LICENSE = "cc-by-nc-sa-4.0"
MEDIC_CITATION = """\
@article{alam2022medic,
  title={MEDIC: A Multi-Task Learning Dataset for Disaster Image Classification},
  author={Alam, Firoj and Alam, Tanvirul and Hasan, Md. Arid and Hasnat, Abul and Imran, Muhammad and Ofli, Ferda},
  journal={Neural Computing and Applications},
  year={2022},
  note={arXiv:2108.12828}
}
"""
MEDIC_DESCRIPTION = (
    "MEDIC: 71,198 social-media images from natural and human-made disasters, each labelled for four tasks: "
    "damage severity, informativeness, humanitarian category and disaster type."
)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def medic_features() -> datasets.Features:
    """Build the features of the `all` config: ids, the image and one `ClassLabel` per task."""
    return datasets.Features(
        {
            "image_id": datasets.Value("string"),
            "event_name": datasets.Value("string"),
            "image_path": datasets.Value("string"),
            "image": datasets.Image(),
            **{task: datasets.ClassLabel(names=names) for task, names in TASK_LABELS.items()},
        }
    )


@dataclass
class MedicBuilderConfig(datasets.BuilderConfig):
    """Builder config for MEDIC.

    Args:
        archive_url (`str`):
            Where to download the archive from when no `data_dir` is given.
        source_fingerprint (`str`, *optional*):
            A digest of the TSV files' paths, sizes and modification times. `load_medic` sets it so that
            edited TSV files build a new cache entry instead of reusing a stale one.
    """

    archive_url: str = MEDIC_ARCHIVE_URL
    source_fingerprint: str | None = None


class MedicBuilder(datasets.GeneratorBasedBuilder):
    """Builds the `train`, `validation` and `test` splits of MEDIC with the four tasks as `ClassLabel`s."""

    BUILDER_CONFIG_CLASS = MedicBuilderConfig
    BUILDER_CONFIGS = [MedicBuilderConfig(name="all", description="All four tasks, one ClassLabel column each.")]
    DEFAULT_CONFIG_NAME = "all"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=MEDIC_DESCRIPTION,
            features=medic_features(),
            homepage=MEDIC_HOMEPAGE,
            license=MEDIC_LICENSE,
            citation=MEDIC_CITATION,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        root = find_tsv_folder(self._local_source(dl_manager))
        logger.info(f"Reading MEDIC TSV files from {root}")
        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={"rows": read_split_rows(root / file_name, root)},
            )
            for split, file_name in SPLIT_FILES.items()
        ]

    def _generate_examples(self, rows: list[dict]) -> Iterator[tuple[str, dict]]:
        for row in rows:
            tsv_file, line = row.pop("tsv_file"), row.pop("line")
            check_image(row["image"], tsv_file, line, row["image_path"])
            yield f"{os.path.basename(tsv_file)}:{line}", row

    def _local_source(self, dl_manager: datasets.DownloadManager) -> Path:
        """Return a local folder with the MEDIC files, downloading or extracting the archive if needed."""
        data_dir = self.config.data_dir
        if data_dir is None:
            url = self.config.archive_url
            try:
                return Path(dl_manager.download_and_extract(url))
            except (OSError, ConnectionError) as error:
                raise ConnectionError(
                    f"Could not download the MEDIC archive from {url}: {error}. Download MEDIC.tar.gz from "
                    f"{MEDIC_HOMEPAGE} yourself and pass the path of the archive or of the extracted folder, "
                    "e.g. `load_medic('/data/MEDIC')` or `medic-hf train --data_dir /data/MEDIC`."
                ) from error
        path = Path(data_dir).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"MEDIC data not found at `data_dir={data_dir!r}`. Pass the folder that contains MEDIC_train.tsv, "
                "MEDIC_dev.tsv and MEDIC_test.tsv, or the MEDIC.tar.gz archive."
            )
        if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
            return Path(dl_manager.extract(str(path)))
        return path


def find_tsv_folder(path: Path) -> Path:
    """Find the one folder under `path` that contains all three MEDIC TSV files, at any depth.

    The archive may or may not wrap its files in a top-level folder, so the depth is not assumed.
    """
    train_file = SPLIT_FILES["train"]
    candidates = sorted(found.parent for found in path.rglob(train_file))
    complete = [folder for folder in candidates if all((folder / name).is_file() for name in SPLIT_FILES.values())]
    if len(complete) == 1:
        return complete[0].resolve()
    expected = ", ".join(SPLIT_FILES.values())
    if not complete:
        raise FileNotFoundError(
            f"No folder under {path} contains all of {expected}. Pass the MEDIC folder or archive as `data_dir`."
        )
    raise MedicDataError(
        f"Found the MEDIC TSV files in {len(complete)} folders under {path}: "
        f"{', '.join(str(folder) for folder in complete)}. Pass the one to use as `data_dir`."
    )


def read_split_rows(tsv_path: Path, root: Path) -> list[dict]:
    """Read and validate one split's TSV file, returning one example dict per row.

    Raises:
        MedicDataError: a row has an unknown label, a wrong number of fields, or an `image_path` that is
            empty, absolute, outside `root` or not a file. The message names the file, line and value.
    """
    rows = []
    # `utf-8-sig` drops a byte-order mark and `newline=""` lets the csv module handle CRLF line endings.
    with open(tsv_path, encoding="utf-8-sig", newline="") as tsv_file:
        reader = csv.DictReader(tsv_file, delimiter="\t")
        check_header(reader.fieldnames, tsv_path)
        for record in reader:
            line = reader.line_num
            if None in record or None in record.values():
                raise MedicDataError(
                    f"{tsv_path}, line {line}: expected {len(reader.fieldnames)} tab-separated fields "
                    f"({', '.join(reader.fieldnames)}), got a different number. Fix the row's tabs or quotes."
                )
            image_path = record["image_path"]
            rows.append(
                {
                    "tsv_file": str(tsv_path),
                    "line": line,
                    "image_id": record["image_id"],
                    "event_name": record["event_name"],
                    "image_path": image_path,
                    "image": str(resolve_image_path(image_path, root, tsv_path, line)),
                    **{task: parse_label(record[task], task, tsv_path, line) for task in TASKS},
                }
            )
    logger.info(f"Read {len(rows)} rows from {tsv_path}")
    return rows


def check_header(fieldnames: list[str] | None, tsv_path: Path) -> None:
    missing = [column for column in TSV_COLUMNS if column not in (fieldnames or [])]
    if missing:
        raise MedicDataError(
            f"{tsv_path}, line 1: missing column(s) {', '.join(missing)} in header {fieldnames}. A MEDIC TSV "
            f"file starts with a tab-separated header row: {chr(9).join(TSV_COLUMNS)}."
        )
    extra = [column for column in fieldnames if column not in TSV_COLUMNS]
    if extra:
        logger.warning(f"{tsv_path}: ignoring column(s) that MEDIC does not define: {', '.join(extra)}")


def parse_label(value: str, task: str, tsv_path: Path, line: int) -> int:
    """Map a class name to its index in the task's sorted class list, or an empty value to -1."""
    if value == "":
        return MISSING_LABEL
    names = TASK_LABELS[task]
    if value in names:
        return names.index(value)
    hint = ""
    normalized = value.strip().lower()
    if normalized in names:
        hint = f" Did you mean {normalized!r}? Remove stray spaces and use lower case."
    raise MedicDataError(
        f"{tsv_path}, line {line}: column `{task}` has unknown label {value!r}.{hint} Valid labels: "
        f"{', '.join(names)}, or an empty field for a missing label."
    )


def resolve_image_path(image_path: str, root: Path, tsv_path: Path, line: int) -> Path:
    """Resolve `image_path` against `root`, rejecting paths that would leave the dataset folder."""
    where = f"{tsv_path}, line {line}: column `image_path`"
    if not image_path:
        raise MedicDataError(f"{where} is empty. Give the image's path relative to {root}.")
    if os.path.isabs(image_path) or Path(image_path).drive:
        raise MedicDataError(
            f"{where} is the absolute path {image_path!r}. Use a path relative to the folder of the TSV files "
            f"({root}), such as data/<source>/<event>/<file>.jpg."
        )
    resolved = (root / image_path).resolve()
    if not resolved.is_relative_to(root):
        raise MedicDataError(
            f"{where} value {image_path!r} resolves to {resolved}, outside the dataset folder {root}. "
            "Image paths must stay inside that folder; move the image there and fix the path."
        )
    if not resolved.is_file():
        raise MedicDataError(
            f"{where} value {image_path!r}: image file not found at {resolved}. Restore the file, or fix or "
            "remove the row."
        )
    return resolved


def check_image(path: str, tsv_file: str, line: int, image_path: str) -> None:
    """Open the image's header to reject empty, non-image and over-limit files before training meets them.

    Pillow's decompression-bomb limit stays on: an image above `Image.MAX_IMAGE_PIXELS * 2` fails here.
    """
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise MedicDataError(
            f"{tsv_file}, line {line}: column `image_path` value {image_path!r}: cannot read the image "
            f"({type(error).__name__}: {error}). Replace the file with a valid image, or remove the row."
        ) from error
