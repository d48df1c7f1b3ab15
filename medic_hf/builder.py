"""A `datasets` builder that reads MEDIC from the official archive or from a folder laid out like it.

datasets 4 and later no longer run loading scripts, so the builder lives in the package and
`medic_hf.load_medic` calls it. The archive contains `MEDIC_train.tsv`, `MEDIC_dev.tsv` and
`MEDIC_test.tsv` with one row per image, and `image_path` is relative to the folder that contains them.

Bad rows: by default the first bad row stops the build with a `MedicDataError` naming the file, line,
column and value. With `on_bad_row="skip"`, rows with an unknown label, a missing or unreadable image, or
the wrong number of fields are skipped and recorded in `MedicBuilder.skipped_rows`. An `image_path` that
is absolute or leaves the dataset folder, and a file without the MEDIC columns, always stop the build.
"""

import csv
import io
import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import datasets

from .errors import MedicDataError
from .images import image_error
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
  year={2022}
}
"""
MEDIC_DESCRIPTION = (
    "MEDIC: 71,198 social-media images from natural and human-made disasters, each labelled for four tasks: "
    "damage severity, informativeness, humanitarian category and disaster type."
)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
BAD_ROW_POLICIES = ("raise", "skip")

# Rows checked together by the image-decoding threads.
CHECK_CHUNK_SIZE = 64


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
        on_bad_row (`str`, defaults to `"raise"`):
            `"raise"` stops at the first bad row; `"skip"` skips it and records it in `skipped_rows`.
        source_fingerprint (`str`, *optional*):
            A digest of the TSV files' paths, sizes and modification times. `load_medic` sets it so that
            edited TSV files build a new cache entry instead of reusing a stale one.
    """

    archive_url: str = MEDIC_ARCHIVE_URL
    on_bad_row: str = "raise"
    source_fingerprint: str | None = None



class MedicBuilder(datasets.GeneratorBasedBuilder):
    """Builds the `train`, `validation` and `test` splits of MEDIC with the four tasks as `ClassLabel`s.

    `data_dir` is a folder laid out like the archive, or the archive itself (read member by member,
    without extracting it). Without `data_dir`, the archive is downloaded from `archive_url`, which may
    also point at a local or remote copy.
    """

    BUILDER_CONFIG_CLASS = MedicBuilderConfig
    BUILDER_CONFIGS = [MedicBuilderConfig(name="all", description="All four tasks, one ClassLabel column each.")]
    DEFAULT_CONFIG_NAME = "all"

    # Threads that decode images to check them. Decoding releases the GIL, so threads run in parallel.
    num_threads: int = min(8, os.cpu_count() or 1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped_rows: list[dict] = []

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=MEDIC_DESCRIPTION,
            features=medic_features(),
            homepage=MEDIC_HOMEPAGE,
            license=MEDIC_LICENSE,
            citation=MEDIC_CITATION,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        # `datasets` sets config fields passed as keyword arguments without running `__post_init__`, so check here.
        if self.config.on_bad_row not in BAD_ROW_POLICIES:
            raise ValueError(
                f"Invalid `on_bad_row={self.config.on_bad_row!r}`: choose one of {', '.join(BAD_ROW_POLICIES)}."
            )
        self.skipped_rows = []
        # `load_medic` warns about repeated image paths after a regular build, from the cached columns, so
        # the warning also shows when the cache is reused. A streamed dataset has no columns to read.
        streaming = isinstance(dl_manager, datasets.StreamingDownloadManager)
        folder = self._local_folder()
        if folder is not None:
            root = find_tsv_folder(folder)
            logger.info(f"Reading MEDIC TSV files from {root}")
            rows = {split: self._read_rows(root / name, root) for split, name in SPLIT_FILES.items()}
            if streaming:
                warn_duplicate_paths({split: [row["image_path"] for row in split_rows] for split, split_rows in rows.items()})
            return [
                datasets.SplitGenerator(name=split, gen_kwargs={"rows": split_rows, "archive": None, "split": split})
                for split, split_rows in rows.items()
            ]

        archive = self._archive(dl_manager)
        tsv_texts = read_archive_tsvs(dl_manager.iter_archive(archive), archive)
        rows = {}
        for split in SPLIT_FILES:
            member, text = tsv_texts[split]
            rows[split] = self._read_rows(member, posixpath.dirname(member), text=text)
        if streaming:
            warn_duplicate_paths({split: [row["image_path"] for row in split_rows] for split, split_rows in rows.items()})
        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={"rows": split_rows, "archive": dl_manager.iter_archive(archive), "split": split},
            )
            for split, split_rows in rows.items()
        ]

    def _generate_examples(self, rows: list[dict], archive: Iterable | None, split: str) -> Iterator[tuple[str, dict]]:
        skipped_before = len(self.skipped_rows)
        if archive is None:
            yield from self._examples_from_folder(rows)
        else:
            yield from self._examples_from_archive(rows, archive)
        skipped = self.skipped_rows[skipped_before:]
        if skipped:
            logger.warning(f"Skipped {len(skipped)} bad row(s) in the {split} split: {summarize_reasons(skipped)}")

    def _examples_from_folder(self, rows: list[dict]) -> Iterator[tuple[str, dict]]:
        with ThreadPoolExecutor(max_workers=self.num_threads) as executor:
            for start in range(0, len(rows), CHECK_CHUNK_SIZE):
                chunk = rows[start : start + CHECK_CHUNK_SIZE]
                errors = list(executor.map(image_error, [row["image"] for row in chunk]))
                for row, error in zip(chunk, errors):
                    if error is not None:
                        self._skip_or_raise(unreadable_image(row, error))
                        continue
                    yield example_key(row), example_from_row(row)

    def _examples_from_archive(self, rows: list[dict], archive: Iterable) -> Iterator[tuple[str, dict]]:
        rows_by_member = defaultdict(list)
        for row in rows:
            rows_by_member[row["image"]].append(row)
        for member, file in archive:
            member = posixpath.normpath(member)
            if member not in rows_by_member:
                continue
            data = file.read()
            error = image_error(data)
            for row in rows_by_member.pop(member):
                if error is not None:
                    self._skip_or_raise(unreadable_image(row, error))
                    continue
                yield example_key(row), example_from_row(row, image={"path": row["image_path"], "bytes": data})
        for missing_rows in rows_by_member.values():
            for row in missing_rows:
                self._skip_or_raise(
                    bad_row_error(row, "image_path", row["image_path"], "missing image", "image not found in the archive")
                )

    def _read_rows(self, tsv_path: Path | str, root: Path | str, text: str | None = None) -> list[dict]:
        rows, skipped = [], 0
        for row in read_tsv_rows(tsv_path, root, text=text):
            if isinstance(row, MedicDataError):
                skipped += self._skip_or_raise(row)
            else:
                rows.append(row)
        logger.info(f"Read {len(rows) + skipped} rows from {tsv_path}" + (f", {skipped} of them skipped" if skipped else ""))
        return rows

    def _skip_or_raise(self, error: MedicDataError) -> bool:
        """Record a skippable bad row under `on_bad_row="skip"`; raise otherwise. Returns `True` if skipped."""
        if self.config.on_bad_row == "skip" and error.skippable:
            self.skipped_rows.append({**error.row, "reason": error.reason, "message": str(error)})
            logger.debug(f"Skipping a bad row: {error}")
            return True
        raise error

    def _local_folder(self) -> Path | None:
        """Return the local folder to read, or `None` when the source is an archive file or URL."""
        data_dir = self.config.data_dir
        if data_dir is None:
            return None
        path = Path(data_dir).expanduser()
        if path.is_dir():
            return path
        if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
            return None
        raise FileNotFoundError(
            f"MEDIC data not found at `data_dir={data_dir!r}`. Pass the folder that contains MEDIC_train.tsv, "
            "MEDIC_dev.tsv and MEDIC_test.tsv, or the MEDIC.tar.gz archive."
        )

    def _archive(self, dl_manager: datasets.DownloadManager) -> str:
        """Return the archive to iterate: a local file, or the download of `archive_url`."""
        if self.config.data_dir is not None:
            return str(Path(self.config.data_dir).expanduser())
        url = self.config.archive_url
        try:
            return dl_manager.download(url)
        except (OSError, ConnectionError) as error:
            raise ConnectionError(
                f"Could not download the MEDIC archive from {url}: {error}. Download MEDIC.tar.gz from "
                f"{MEDIC_HOMEPAGE} yourself and pass the path of the archive or of the extracted folder, "
                "e.g. `load_medic('/data/MEDIC')` or `medic-hf train --source /data/MEDIC`."
            ) from error


def find_tsv_folder(path: Path) -> Path:
    """Find the one folder under `path` that contains all three MEDIC TSV files, at any depth.

    The archive may or may not wrap its files in a top-level folder, so the depth is not assumed.
    """
    candidates = sorted(found.parent for found in path.rglob(SPLIT_FILES["train"]))
    complete = [folder for folder in candidates if all((folder / name).is_file() for name in SPLIT_FILES.values())]
    if len(complete) == 1:
        return complete[0].resolve()
    expected = ", ".join(SPLIT_FILES.values())
    if not complete:
        raise FileNotFoundError(
            f"No folder under {path} contains all of {expected}. Pass the MEDIC folder or archive as the source."
        )
    raise MedicDataError(
        f"Found the MEDIC TSV files in {len(complete)} folders under {path}: "
        f"{', '.join(str(folder) for folder in complete)}. Pass the one to use as the source."
    )


def read_archive_tsvs(members: Iterable[tuple[str, io.BufferedReader]], archive: str) -> dict[str, tuple[str, str]]:
    """Read the three TSV files from an archive, stopping as soon as all are found.

    Returns:
        Per split, the member path of its TSV file and the file's text.
    """
    split_by_name = {name: split for split, name in SPLIT_FILES.items()}
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for member, file in members:
        name = posixpath.basename(member)
        if name in split_by_name:
            found[split_by_name[name]].append((posixpath.normpath(member), file.read().decode("utf-8-sig")))
        if len(found) == len(split_by_name) and all(len(entries) == 1 for entries in found.values()):
            break
    missing = [SPLIT_FILES[split] for split in SPLIT_FILES if split not in found]
    if missing:
        raise FileNotFoundError(
            f"The archive {archive} has no {', '.join(missing)}. Pass the MEDIC.tar.gz from {MEDIC_HOMEPAGE}."
        )
    folders = {posixpath.dirname(entries[0][0]) for entries in found.values()}
    if len(folders) != 1 or any(len(entries) != 1 for entries in found.values()):
        raise MedicDataError(
            f"The archive {archive} has MEDIC TSV files in several folders: {sorted(folders)}. Repack it with one set."
        )
    return {split: entries[0] for split, entries in found.items()}


def read_tsv_rows(tsv_path: Path | str, root: Path | str, text: str | None = None) -> Iterator[dict | MedicDataError]:
    """Parse one split's TSV file, yielding an example dict per good row and a `MedicDataError` per bad one.

    `root` is the folder `image_path` is relative to: a `Path` on disk, or a member folder (a `str`) in an
    archive. Unsafe paths and a header without the MEDIC columns are raised at once, never yielded.
    """
    if text is None:
        # `utf-8-sig` drops a byte-order mark and `newline=""` lets the csv module handle CRLF line endings.
        with open(tsv_path, encoding="utf-8-sig", newline="") as tsv_file:
            text = tsv_file.read()
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
    check_header(reader.fieldnames, tsv_path)
    for record in reader:
        line = reader.line_num
        where = {"file": str(tsv_path), "line": line}
        if None in record or None in record.values():
            # DictReader fills missing fields with None and puts extra fields in a list under the key None.
            extra_fields = record.pop(None, None) or []
            found = sum(value is not None for value in record.values()) + len(extra_fields)
            yield MedicDataError(
                f"{tsv_path}, line {line}: expected {len(reader.fieldnames)} tab-separated fields "
                f"({', '.join(reader.fieldnames)}), got {found}. Fix the row's tabs or quotes.",
                reason="malformed row",
                skippable=True,
                row={**where, "column": "", "value": ""},
            )
            continue
        image_path = record["image_path"]
        try:
            labels = {task: parse_label(record[task], task, tsv_path, line) for task in TASKS}
            image = resolve_image_path(image_path, root, tsv_path, line)
        except MedicDataError as error:
            yield error
            continue
        yield {
            **where,
            "image_id": record["image_id"],
            "event_name": record["event_name"],
            "image_path": image_path,
            "image": image,
            **labels,
        }


def check_header(fieldnames: list[str] | None, tsv_path: Path | str) -> None:
    missing = [column for column in TSV_COLUMNS if column not in (fieldnames or [])]
    if missing:
        raise MedicDataError(
            f"{tsv_path}, line 1: missing column(s) {', '.join(missing)} in header {fieldnames}. A MEDIC TSV "
            f"file starts with a tab-separated header row: {chr(9).join(TSV_COLUMNS)}.",
            reason="missing columns",
        )
    extra = [column for column in fieldnames if column not in TSV_COLUMNS]
    if extra:
        logger.warning(f"{tsv_path}: ignoring column(s) that MEDIC does not define: {', '.join(extra)}")


def parse_label(value: str, task: str, tsv_path: Path | str, line: int) -> int:
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
        f"{', '.join(names)}, or an empty field for a missing label.",
        reason="unknown label",
        skippable=True,
        row={"file": str(tsv_path), "line": line, "column": task, "value": value},
    )


def resolve_image_path(image_path: str, root: Path | str, tsv_path: Path | str, line: int) -> str:
    """Resolve `image_path` against the dataset root, rejecting paths that would leave it.

    For a folder on disk, returns the absolute file path; for an archive, the normalized member path.
    """
    where = f"{tsv_path}, line {line}: column `image_path`"
    row = {"file": str(tsv_path), "line": line, "column": "image_path", "value": image_path}
    if not image_path:
        raise MedicDataError(
            f"{where} is empty. Give the image's path relative to {root}.", reason="missing image", skippable=True, row=row
        )
    if os.path.isabs(image_path) or posixpath.isabs(image_path) or Path(image_path).drive:
        raise MedicDataError(
            f"{where} is the absolute path {image_path!r}. Use a path relative to the folder of the TSV files "
            f"({root}), such as data/<source>/<event>/<file>.jpg.",
            reason="unsafe path",
            row=row,
        )
    if isinstance(root, str):
        member = posixpath.normpath(posixpath.join(root, image_path))
        inside = member.startswith(root + "/") if root else not member.startswith("../") and member != ".."
        if not inside:
            raise unsafe_path_error(where, image_path, member, root, row)
        return member
    # The check is on the path as written, so a `data` folder that is a symbolic link to another disk still
    # works. A user who can create links in the dataset folder already chooses its files, but a TSV row cannot.
    resolved = Path(os.path.normpath(root / image_path))
    if not resolved.is_relative_to(root):
        raise unsafe_path_error(where, image_path, resolved, root, row)
    if not resolved.is_file():
        raise MedicDataError(
            f"{where} value {image_path!r}: image file not found at {resolved}. Restore the file, or fix or "
            "remove the row.",
            reason="missing image",
            skippable=True,
            row=row,
        )
    return str(resolved)


def unsafe_path_error(where: str, image_path: str, resolved, root, row: dict) -> MedicDataError:
    return MedicDataError(
        f"{where} value {image_path!r} resolves to {resolved}, outside the dataset folder {root}. "
        "Image paths must stay inside that folder: move the image there and fix the path.",
        reason="unsafe path",
        row=row,
    )


def unreadable_image(row: dict, error: str) -> MedicDataError:
    return bad_row_error(row, "image_path", row["image_path"], "unreadable image", f"cannot read the image ({error})")


def bad_row_error(row: dict, column: str, value: str, reason: str, problem: str) -> MedicDataError:
    return MedicDataError(
        f"{row['file']}, line {row['line']}: column `{column}` value {value!r}: {problem}. "
        "Replace the file with a valid image, or remove the row, or pass on_bad_row='skip' to skip such rows.",
        reason=reason,
        skippable=True,
        row={"file": row["file"], "line": row["line"], "column": column, "value": value},
    )


def example_key(row: dict) -> str:
    return f"{os.path.basename(row['file'])}:{row['line']}"


def example_from_row(row: dict, image=None) -> dict:
    example = {name: row[name] for name in ("image_id", "event_name", "image_path", *TASKS)}
    example["image"] = row["image"] if image is None else image
    return example


def warn_duplicate_paths(image_paths: dict[str, list[str]]) -> None:
    """Warn about image paths listed twice in a split, and about images shared between splits.

    An image in both train and test leaks test data into training and inflates test scores.
    """
    paths = {split: Counter(split_paths) for split, split_paths in image_paths.items()}
    for split, counts in paths.items():
        repeated = {path: count for path, count in counts.items() if count > 1}
        if repeated:
            examples = ", ".join(list(repeated)[:3])
            logger.warning(
                f"{len(repeated)} image path(s) appear more than once in the {split} split "
                f"({sum(repeated.values()) - len(repeated)} extra rows), e.g. {examples}."
            )
    splits = list(paths)
    for index, first in enumerate(splits):
        for second in splits[index + 1 :]:
            shared = sorted(set(paths[first]) & set(paths[second]))
            if shared:
                logger.warning(
                    f"{len(shared)} image path(s) appear in both the {first} and {second} splits, e.g. "
                    f"{', '.join(shared[:3])}. Images shared between splits inflate evaluation scores."
                )


def summarize_reasons(skipped: list[dict]) -> str:
    """Format skipped rows as counts per reason, e.g. `"missing image: 3, unknown label: 1"`."""
    return ", ".join(f"{reason}: {count}" for reason, count in sorted(Counter(r["reason"] for r in skipped).items()))
