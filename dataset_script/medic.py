"""Loading script for MEDIC, for `datasets` releases before 4.0, which still run loading scripts.

Put this file and README.md in a Hub dataset repo (or a local folder) and call
`datasets.load_dataset("<repo or folder>", trust_remote_code=True)`. It reads the official archive member
by member, without extracting it, and stores each image's bytes. Pass `data_dir="/path/to/MEDIC.tar.gz"`
to use a downloaded copy. It depends on `datasets` and Pillow only, not on medic_hf.

`datasets` 4.0 and later do not run scripts: there, use a folder written by `medic-hf prepare` or
`medic_hf.load_medic`, which give the same features.
"""

import csv
import io
import posixpath

import datasets


_URL = "https://crisisnlp.qcri.org/data/medic/MEDIC.tar.gz"
_HOMEPAGE = "https://crisisnlp.qcri.org/medic/"
_LICENSE = "cc-by-nc-sa-4.0"
_CITATION = """\
@article{alam2022medic,
  title={MEDIC: A Multi-Task Learning Dataset for Disaster Image Classification},
  author={Alam, Firoj and Alam, Tanvirul and Hasan, Md. Arid and Hasnat, Abul and Imran, Muhammad and Ofli, Ferda},
  journal={Neural Computing and Applications},
  year={2022}
}
"""

# Class names of each task in sorted order: index i means the same class in every split.
_TASK_LABELS = {
    "damage_severity": ["little_or_none", "mild", "severe"],
    "informative": ["informative", "not_informative"],
    "humanitarian": [
        "affected_injured_or_dead_people",
        "infrastructure_and_utility_damage",
        "not_humanitarian",
        "rescue_volunteering_or_donation_effort",
    ],
    "disaster_types": ["earthquake", "fire", "flood", "hurricane", "landslide", "not_disaster", "other_disaster"],
}
_SPLIT_FILES = {"train": "MEDIC_train.tsv", "validation": "MEDIC_dev.tsv", "test": "MEDIC_test.tsv"}


class Medic(datasets.GeneratorBasedBuilder):
    """MEDIC: social-media disaster images labelled for four tasks. An empty label is stored as -1."""

    VERSION = datasets.Version("1.0.0")

    def _info(self):
        features = {name: datasets.Value("string") for name in ("image_id", "event_name", "image_path")}
        features["image"] = datasets.Image()
        features.update({task: datasets.ClassLabel(names=names) for task, names in _TASK_LABELS.items()})
        return datasets.DatasetInfo(
            description="MEDIC: social-media images from disasters, labelled for four tasks.",
            features=datasets.Features(features),
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        archive = self.config.data_dir or dl_manager.download(_URL)
        tables = {}
        for member, file in dl_manager.iter_archive(archive):
            name = posixpath.basename(member)
            if name in _SPLIT_FILES.values():
                tables[name] = (posixpath.dirname(posixpath.normpath(member)), file.read().decode("utf-8-sig"))
            if len(tables) == len(_SPLIT_FILES):
                break
        missing = sorted(set(_SPLIT_FILES.values()) - set(tables))
        if missing:
            raise FileNotFoundError(f"{archive} has no {', '.join(missing)}: pass the MEDIC.tar.gz from {_HOMEPAGE}.")
        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={"table": tables[name], "name": name, "files": dl_manager.iter_archive(archive)},
            )
            for split, name in _SPLIT_FILES.items()
        ]

    def _generate_examples(self, table, name, files):
        folder, text = table
        rows_by_member = {}
        for line, row in enumerate(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t"), start=2):
            member = posixpath.normpath(posixpath.join(folder, row["image_path"]))
            inside = member.startswith(folder + "/") if folder else not (member == ".." or member.startswith("../"))
            if posixpath.isabs(row["image_path"]) or not inside:
                raise ValueError(f"{name}, line {line}: image_path {row['image_path']!r} leaves the dataset folder.")
            labels = {}
            for task, names in _TASK_LABELS.items():
                if row[task] and row[task] not in names:
                    raise ValueError(f"{name}, line {line}: unknown {task} label {row[task]!r}; valid: {names}.")
                labels[task] = names.index(row[task]) if row[task] else -1
            example = {key: row[key] for key in ("image_id", "event_name", "image_path")}
            rows_by_member.setdefault(member, []).append((line, {**example, **labels}))
        for member, file in files:
            matches = rows_by_member.pop(posixpath.normpath(member), [])
            data = file.read() if matches else None
            for line, example in matches:
                yield f"{name}:{line}", {**example, "image": {"path": example["image_path"], "bytes": data}}
        if rows_by_member:
            first = next(iter(rows_by_member))
            raise FileNotFoundError(f"{name}: {len(rows_by_member)} image(s) not in the archive, e.g. {first}.")
