"""UniCAM: the cached path equals recomputing everything with autograd; variants; reference sets, their
spares, duplicates of the query and bad files; blank maps that say why."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import backend_for, make_cifar
from kdx_engine.data import load_image, to_batch
from kdx_engine.data.datasets import ImageFolderDataset
from kdx_engine.unicam import VARIANTS, ReferenceSet, UniCam, distilled_and_residual


def _model(seed):
    return make_cifar("resnet8", 3, seed)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            pixels[..., "abc".index(c)] //= 3  # a class-dependent colour shift
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    query = root.parent / "query.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(query)
    return root, query


def _centred(d):
    n = d.shape[0]
    r = d.sum(1, keepdim=True) - d.diagonal()[:, None]
    c = d.sum(0, keepdim=True) - d.diagonal()[None, :]
    g = d.sum() - d.diagonal().sum()
    out = d - r / (n - 2) - c / (n - 2) + g / ((n - 1) * (n - 2))
    return out * (1 - torch.eye(n, dtype=d.dtype))


def _naive_map(x_model, y_model, images, labels, layer, variant="label-guided"):
    """Recompute the whole batch from scratch, autograd through every model and statistic."""
    x_model = copy.deepcopy(x_model).requires_grad_(True)
    y_model = copy.deepcopy(y_model)
    store = {}
    x_model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
    x_model.fc.register_forward_hook(lambda m, i, o: store.__setitem__("F", i[0]))
    y_model.fc.register_forward_hook(lambda m, i, o: store.__setitem__("FY", i[0]))
    x = images.clone().requires_grad_(True)
    x_model(x)
    y_model(images)
    fx, fy = store["F"].double(), store["FY"].double().detach()
    dist = lambda f: torch.sqrt(((f[:, None] - f[None]) ** 2).sum(-1) + 1e-18)  # noqa: E731
    n = len(labels)
    inner = lambda a, b: (a * b).sum() / (n * (n - 3))  # noqa: E731
    a, b = _centred(dist(fx)), _centred(dist(fy))
    g = _centred(dist(F.one_hot(torch.tensor(labels)).double()))
    residual = a - inner(a, b) / inner(b, b) * b
    if variant == "label-free":
        score = residual.max(dim=1).values.sum()
    else:
        score = inner(residual, g) / torch.sqrt(inner(residual, residual) * inner(g, g))
    (grad,) = torch.autograd.grad(score, store["A"])
    act, grad = store["A"][-1], grad[-1]
    cam = torch.relu((grad.mean(dim=(1, 2))[:, None, None] * act).sum(0))
    return F.interpolate(cam[None, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_unicam_equals_recomputing_everything(folder, variant):
    root, query_path = folder
    student, base = _model(1), _model(2)
    sb, bb = backend_for(copy.deepcopy(student), 3, 32), backend_for(copy.deepcopy(base), 3, 32)
    reference = ReferenceSet.from_folder(root, n=8, seed=0)
    query = load_image(query_path)
    explainer = UniCam(sb, bb, reference, layer="layer3", variant=variant)
    result = explainer.explain(query, label=2)
    labels = [*reference.labels, 2]
    images = to_batch([*reference.images, query], sb.info.preprocessing)
    expected = _naive_map(student, base, images, labels, "layer3", variant)
    assert expected.abs().max() > 0
    torch.testing.assert_close(result.maps[0].double(), expected.detach().double(), atol=1e-6, rtol=1e-5)
    # a second query reuses the cached reference rows and still matches
    again = UniCam(sb, bb, reference, layer="layer3", variant=variant).explain(query, label=2)
    torch.testing.assert_close(again.maps, result.maps)


def test_distilled_and_residual_record_what_they_removed(folder):
    root, query_path = folder
    sb, bb = backend_for(_model(1), 3, 32), backend_for(_model(2), 3, 32)
    reference = ReferenceSet.from_folder(root, n=8, seed=0)
    distilled, residual = distilled_and_residual(sb, bb, reference, load_image(query_path), label=0)
    assert distilled.maps.shape == residual.maps.shape == (1, 32, 32)
    info = distilled.details["unicam"]
    assert info["n"] == 8 and len(info["reference_hashes"]) == 7 and info["variant"] == "label-free"
    assert info["variant_choice"] == "default (our choice, METHODS §4)" and info["reference_replaced"] == []
    assert not torch.allclose(distilled.maps, residual.maps)
    # the pair shares its forwards; each map equals the one computed on its own
    alone = UniCam(bb, sb, reference).explain(load_image(query_path), label=0)
    torch.testing.assert_close(residual.maps, alone.maps, atol=1e-7, rtol=1e-6)


def test_removing_a_model_from_itself_leaves_nothing(folder):
    root, query_path = folder
    model = _model(1)
    a, b = backend_for(copy.deepcopy(model), 3, 32), backend_for(copy.deepcopy(model), 3, 32)
    result = UniCam(a, b, ReferenceSet.from_folder(root, n=8), layer="layer3").explain(load_image(query_path), 0)
    assert (result.maps == 0).all() and "all-zero map" in result.notes[0]
    # the note says why and what to change
    assert "at n = 8" in result.notes[0] and "geometry agree" in result.notes[0] and "raise n" in result.notes[0]


def test_a_label_guided_score_without_label_geometry_says_why(folder):
    root, query_path = folder
    sb, bb = backend_for(_model(1), 3, 32), backend_for(_model(2), 3, 32)
    images = [load_image(path) for path in sorted(root.glob("*/0.png"))]
    reference = ReferenceSet(tuple(images), (0, 1, 2), "one per class")  # n = 4, the query of a 4th class
    result = UniCam(sb, bb, reference, variant="label-guided").explain(load_image(query_path), label=3)
    assert (result.maps == 0).all() and "label-guided score is undefined at n = 4" in result.notes[0]


def test_a_map_that_relu_blanks_says_why_and_what_to_change():
    from kdx_engine.unicam.unicam import blank_map_note

    raw = -torch.ones(1, 4, 4)
    note = blank_map_note(raw, torch.ones(1, 2, 4, 4), 16, "label-free")
    assert "at n = 16" in note and "negative everywhere" in note and "reference set" in note
    assert blank_map_note(torch.ones(1, 4, 4), torch.ones(1, 2, 4, 4), 16, "label-free") is None


def test_label_free_variant_and_label_source(folder):
    root, query_path = folder
    sb, bb = backend_for(_model(1), 3, 32), backend_for(_model(2), 3, 32)
    reference = ReferenceSet.from_folder(root, n=8)
    assert VARIANTS[0] == "label-free"
    free = UniCam(sb, bb, reference).explain(load_image(query_path))
    assert free.details["unicam"]["label_source"] == "none (label-free)"
    assert free.details["unicam"]["variant"] == "label-free"
    assert torch.isfinite(free.maps).all() and free.maps.max() > 0
    guided = UniCam(sb, bb, reference, variant="label-guided").explain(load_image(query_path))
    assert "prediction" in guided.details["unicam"]["label_source"]
    assert guided.details["unicam"]["variant_choice"] == "option (METHODS §4)"


def test_reference_set_is_seeded_and_balanced(folder):
    root, _ = folder
    first, again = ReferenceSet.from_folder(root, n=7, seed=3), ReferenceSet.from_folder(root, n=7, seed=3)
    assert first.key == again.key
    assert sorted(first.labels) == [0, 0, 1, 1, 2, 2]
    assert ReferenceSet.from_folder(root, n=7, seed=4).key != first.key
    with pytest.raises(ValueError, match="needs 15"):
        ReferenceSet.from_folder(root, n=16)

    # the members are the dataset's own balanced sample; the spares continue the same draw
    dataset = ImageFolderDataset(root)
    members = [dataset.paths[i].name for i in dataset.balanced_sample(6, seed=3)]
    assert [image.path.name for image in first.images] == members
    assert len(first.spares) == 6 and not set(first.hashes) & {image.sha256 for image in first.spares}
    assert sorted(first.spare_labels) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_query_in_the_reference_set_is_swapped_for_a_spare(folder, variant):
    root, _ = folder
    student, base = _model(1), _model(2)
    reference = ReferenceSet.from_folder(root, n=8, seed=0)
    query = reference.images[2]
    explained = UniCam(backend_for(copy.deepcopy(student), 3, 32), backend_for(copy.deepcopy(base), 3, 32),
                       reference, layer="layer3", variant=variant).explain(query, label=reference.labels[2])
    info = explained.details["unicam"]
    spare = next(i for i, label in enumerate(reference.spare_labels) if label == reference.labels[2])
    by = reference.spares[spare]
    assert info["reference_replaced"] == [{"sha256": query.sha256, "by": by.sha256, "label": reference.labels[2],
                                           "by_label": reference.labels[2], "same_class": True}]
    assert query.sha256 not in info["reference_hashes"] and by.sha256 in info["reference_hashes"]
    assert info["n"] == 8
    # the same map as UniCAM on a set built by hand that holds the replacement (fresh models, no shared cache)
    images = list(reference.images)
    images[2] = by
    explicit = ReferenceSet(tuple(images), reference.labels, "by hand")
    expected = UniCam(backend_for(copy.deepcopy(student), 3, 32), backend_for(copy.deepcopy(base), 3, 32),
                      explicit, layer="layer3", variant=variant).explain(query, label=reference.labels[2])
    assert expected.maps.abs().max() > 0 and expected.details["unicam"]["reference_replaced"] == []
    torch.testing.assert_close(explained.maps, expected.maps, atol=1e-6, rtol=0)
    assert explained.details["unicam"]["reference_key"] == explicit.key


def test_the_swap_is_cached_and_a_member_without_spares_is_dropped(folder):
    root, _ = folder
    sb, bb = backend_for(_model(1), 3, 32), backend_for(_model(2), 3, 32)
    reference = ReferenceSet.from_folder(root, n=8, seed=0)
    explainer = UniCam(sb, bb, reference, layer="layer3")
    query = reference.images[0]
    first = explainer.explain(query)
    calls = []
    handle = sb.module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    again = explainer.explain(query)
    handle.remove()
    assert calls == [1] and torch.equal(first.maps, again.maps)  # the query's forward only
    bare = ReferenceSet(reference.images, reference.labels, "no spares")
    swapped, swaps = bare.replacing(query)
    assert len(swapped.images) == 6 and swaps[0].by is None
    dropped = UniCam(sb, bb, bare, layer="layer3").explain(query)
    assert dropped.details["unicam"]["n"] == 7
    assert dropped.details["unicam"]["reference_replaced"][0]["by"] is None


def test_a_query_in_the_gallery_reference_is_swapped(folder):
    root, _ = folder
    dataset = ImageFolderDataset(root)
    images = [dataset[i][0] for i in range(len(dataset))]
    reference = ReferenceSet.from_images(images, list(dataset.labels), n=6, seed=1)
    assert len(reference.spares) == 5
    old = ReferenceSet.from_images(images, list(dataset.labels), n=6, seed=1, spares=0)
    assert old.key == reference.key  # the spares do not change the members
    member = reference.images[0]
    swapped, swaps = reference.replacing(member)
    assert member.sha256 not in swapped.hashes and len(swapped.images) == 5
    assert swaps[0].same_class and swaps[0].by in {image.sha256 for image in reference.spares}


def test_a_bad_file_in_the_reference_folder_is_skipped_and_reported(tmp_path, folder):
    root, query_path = folder
    import shutil

    bad_root = tmp_path / "ref"
    shutil.copytree(root, bad_root)
    good = ReferenceSet.from_folder(bad_root, n=8, seed=0)
    victim = good.images[1].path
    victim.write_bytes(b"not an image")
    reference = ReferenceSet.from_folder(bad_root, n=8, seed=0)
    assert len(reference.images) == 7 and victim.name in reference.skipped[0]
    assert victim not in [image.path for image in reference.images]
    assert reference.images[0].path == good.images[0].path
    result = UniCam(backend_for(_model(1), 3, 32), backend_for(_model(2), 3, 32), reference).explain(
        load_image(query_path))
    assert result.details["unicam"]["reference_skipped"] == list(reference.skipped)
    assert torch.isfinite(result.maps).all()


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_one_seed_gives_one_reference_set_from_a_folder_and_from_the_gallery(folder, seed):
    """Both draws are ``balanced_order`` (kdx_engine.data.datasets): members and spares agree."""
    root, _ = folder
    dataset = ImageFolderDataset(root)
    images = [dataset[i][0] for i in range(len(dataset))]
    from_folder = ReferenceSet.from_folder(root, n=7, seed=seed)
    from_gallery = ReferenceSet.from_images(images, list(dataset.labels), n=7, seed=seed)
    assert from_gallery.key == from_folder.key and from_gallery.labels == from_folder.labels
    assert [s.sha256 for s in from_gallery.spares] == [s.sha256 for s in from_folder.spares]


def test_balanced_indices_draw_labelled_images_first():
    from kdx_engine.data.datasets import balanced_indices, balanced_order

    labels = [0, 0, None, 1, 1, 1, None, 2]
    order = balanced_order(labels, seed=3)
    assert sorted(order) == list(range(8)) and order[-2:] == [2, 6]  # the unlabelled ones last
    assert {labels[i] for i in order[:3]} == {0, 1, 2}  # classes take turns
    for k in range(7):
        assert balanced_indices(labels, k, seed=3) == sorted(order[:k])
    assert balanced_indices(labels, 8, seed=3) == sorted(order[:6])  # unlabelled only when none is labelled
    assert sorted(balanced_indices([None] * 4, 3, seed=0)) == balanced_indices([None] * 4, 3, seed=0)
    assert len(balanced_indices([None] * 4, 3, seed=0)) == 3
    with pytest.raises(ValueError, match="negative"):
        balanced_indices(labels, -1, seed=0)
