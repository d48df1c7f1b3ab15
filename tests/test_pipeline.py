"""The custom `image-classification` pipeline: inputs, batching, top-k, and errors."""

from pathlib import Path


import numpy as np
import pytest
import torch
from conftest import write_jpeg
from huggingface_hub.utils import httpx
from local_http import serve_folder
from PIL import Image, UnidentifiedImageError
from saved_models import save_tiny_model
from transformers import AutoImageProcessor, pipeline

from medic_hf import TASK_LABELS, TASKS, MedicForMultiTaskImageClassification
from medic_hf.pipeline_medic import MedicImageClassificationPipeline, open_image


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("pipeline") / "medic-tiny", arch="vit", seed=6)


@pytest.fixture(scope="module")
def classifier(model_folder):
    model = MedicForMultiTaskImageClassification.from_pretrained(model_folder)
    return MedicImageClassificationPipeline(
        model=model, image_processor=AutoImageProcessor.from_pretrained(model_folder)
    )


@pytest.fixture
def photos(tmp_path):
    paths = []
    for seed in range(5):
        paths.append(tmp_path / f"photo_{seed}.jpg")
        write_jpeg(paths[-1], seed=seed, size=(44 + 5 * seed, 38))
    return [str(path) for path in paths]


def expected_probabilities(classifier, image: Image.Image) -> dict[str, torch.Tensor]:
    inputs = classifier.image_processor(image, return_tensors="pt")
    with torch.no_grad():
        logits = classifier.model(pixel_values=inputs["pixel_values"]).task_logits()
    return {task: task_logits[0].softmax(-1) for task, task_logits in logits.items()}


def test_every_task_ranked_with_scores(classifier, photos):
    result = classifier(photos[0])

    expected = expected_probabilities(classifier, Image.open(photos[0]).convert("RGB"))
    assert list(result) == TASKS
    for task, ranked in result.items():
        assert sorted(entry["label"] for entry in ranked) == sorted(TASK_LABELS[task])
        scores = [entry["score"] for entry in ranked]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
        for entry in ranked:
            index = TASK_LABELS[task].index(entry["label"])
            assert entry["score"] == pytest.approx(expected[task][index].item(), abs=1e-6)


def test_top_k_limits_labels_per_task(classifier, photos):
    top_two = classifier(photos[0], top_k=2)
    top_ten = classifier(photos[0], top_k=10)
    full = classifier(photos[0])

    for task in TASKS:
        assert top_two[task] == full[task][:2]
        assert top_ten[task] == full[task]


def test_batches_keep_input_order(classifier, photos):
    one_by_one = [classifier(path) for path in photos]

    batched = classifier(photos, batch_size=2)

    assert len(batched) == len(photos)
    for single, from_batch in zip(one_by_one, batched, strict=True):
        for task in TASKS:
            assert [entry["label"] for entry in from_batch[task]] == [entry["label"] for entry in single[task]]
            np.testing.assert_allclose(
                [entry["score"] for entry in from_batch[task]], [entry["score"] for entry in single[task]], atol=1e-5
            )


def test_path_pil_and_url_inputs_agree(classifier, photos):
    from_path = classifier(photos[2])
    from_pil = classifier(Image.open(photos[2]))

    with serve_folder(Path(photos[2]).parent) as base_url:
        from_url = classifier(f"{base_url}/{Path(photos[2]).name}", timeout=10)

    assert from_pil == from_path
    assert from_url == from_path


def test_missing_url_raises_http_error(classifier, photos):
    with serve_folder(Path(photos[0]).parent) as base_url:
        with pytest.raises(httpx.HTTPStatusError, match="404"):
            classifier(f"{base_url}/missing.jpg")


def test_unreadable_inputs_raise_clear_errors(classifier, tmp_path):
    page = tmp_path / "page.jpg"
    page.write_text("<html>not an image</html>")

    with pytest.raises(UnidentifiedImageError):
        classifier(str(page))
    with pytest.raises(FileNotFoundError):
        classifier(str(tmp_path / "absent.jpg"))
    with pytest.raises(TypeError, match="Invalid image of type int"):
        classifier(7)


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_invalid_top_k_rejected(classifier, photos, top_k):
    with pytest.raises(ValueError, match=f"Invalid `top_k={top_k!r}`"):
        classifier(photos[0], top_k=top_k)


def test_unknown_argument_rejected(classifier, photos):
    with pytest.raises(TypeError, match="Unexpected argument\\(s\\) function_to_apply"):
        classifier(photos[0], function_to_apply="sigmoid")


def test_transparent_pixels_become_white(classifier, tmp_path):
    rgba = Image.new("RGBA", (40, 40), (200, 30, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 40))  # left half fully transparent
    white_background = Image.new("RGB", (40, 40), (200, 30, 30))
    white_background.paste((255, 255, 255), (0, 0, 20, 40))
    rgba.save(tmp_path / "transparent.png")

    assert np.array_equal(np.asarray(open_image(str(tmp_path / "transparent.png"))), np.asarray(white_background))
    assert classifier(str(tmp_path / "transparent.png")) == classifier(white_background)


def test_exif_orientation_applied(classifier, tmp_path):
    upright = Image.new("RGB", (30, 50))
    upright.paste((250, 250, 0), (0, 0, 30, 10))
    # Stored rotated by 90 degrees, with EXIF orientation 6 ("rotate 90 clockwise to display").
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)

    opened = open_image(str(tmp_path / "rotated.jpg"))

    assert opened.size == (30, 50)
    assert np.asarray(opened)[:10].mean() > np.asarray(opened)[20:].mean() + 100


def test_decompression_bomb_limit_stays_on(classifier, photos, monkeypatch):
    # Pillow raises for images over twice MAX_IMAGE_PIXELS. A small limit replaces a real bomb here.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)

    with pytest.raises(Image.DecompressionBombError):
        classifier(photos[0])


def test_pipeline_factory_builds_custom_pipeline(model_folder, photos, classifier):
    downstream = pipeline("image-classification", model=str(model_folder), trust_remote_code=True)

    assert type(downstream).__name__ == "MedicImageClassificationPipeline"
    result = downstream(photos[1], top_k=1)
    expected = classifier(photos[1], top_k=1)
    for task in TASKS:
        assert result[task][0]["label"] == expected[task][0]["label"]
        assert result[task][0]["score"] == pytest.approx(expected[task][0]["score"], abs=1e-6)


def test_single_task_model_returns_one_task(tmp_path, photos):
    folder = save_tiny_model(tmp_path / "single", arch="resnet", tasks=["damage_severity"])
    model = MedicForMultiTaskImageClassification.from_pretrained(folder)
    single = MedicImageClassificationPipeline(model=model, image_processor=AutoImageProcessor.from_pretrained(folder))

    result = single(photos[0])

    assert list(result) == ["damage_severity"]
    assert len(result["damage_severity"]) == 3


def test_real_photos(classifier, real_photos):
    paths = sorted(str(path) for path in (real_photos / "data").rglob("*.jpg"))[:4]
    if not paths:
        pytest.skip(f"no JPEG files under {real_photos / 'data'}")

    results = classifier(paths, batch_size=2, top_k=1)

    assert len(results) == len(paths)
    for result in results:
        assert list(result) == TASKS
        for task in TASKS:
            assert result[task][0]["label"] in TASK_LABELS[task]
