"""Scanner calibration (`hemotwin calibrate`): twin fields of a known profile, refusals, the scanner file, the CLI.

The ground truths come from the twin itself, not from the code under test:

- pixel size: the profile's ``camera.um_per_px`` (the files carry no metadata, so the red cells
  must find it);
- blur: the equivalent Gaussian σ of the profile's edge-spread function, measured on a straight
  (5°-slanted) step of red-cell stain rendered through the same profile, with the same edge fit
  (:func:`fit_edge_spread`: an optical edge is not exactly Gaussian, so "equivalent σ" is defined
  by that fit); what calibrate adds on top, finding and tracing red-cell rims, is what is tested;
- noise: the standard deviation of a blank field rendered with the profile's noise minus the same
  field rendered without it (read noise 0, full well 1e6: shot noise below 0.15 levels).

The profile has no JPEG: a JPEG round trip of the noise-free field differs from the noisy one's,
which would put compression error into the noise truth.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from hemotwin.cli import app
from hemotwin.errors import InputError, OutputExistsError
from hemotwin.twin.profiles import ScannerProfile, load_profile
from hemotwin.twin.reimage import StainBasis
from hemotwin.twin.render import render
from hemotwin.twin.specimen.compose import FieldSpec, compose_field
from hemotwin.twin.specimen.maps import ABSORBERS, AbsorberMaps
from hemotwin.vision.scanner import SCHEMA, ScannerCalibration, calibrate_scanner, training_target
from hemotwin.vision.scanner_measures import fit_edge_spread

runner = CliRunner()
SIZE = 512  # px: ~100 µm fields hold ~40 isolated red cells each at 0.2 µm/px
N_FIELDS = 6


def _flat(res) -> str:
    return "".join(res.output.split())


def _profile(um_per_px: float, *, defocus_um: float = 0.6, read_noise_e: float = 40.0,
             full_well_e: float = 3000.0) -> ScannerProfile:
    d = load_profile("wsi-40x").model_dump()
    d["name"] = f"lab-{um_per_px:g}"
    d["camera"].update(um_per_px=um_per_px, read_noise_e=read_noise_e, full_well_e=full_well_e)
    d["optics"]["defocus_um"] = defocus_um
    d["processing"]["jpeg_quality"] = None
    return ScannerProfile.model_validate(d)


LAB = _profile(0.2)


def _write_fields(folder: Path, profile: ScannerProfile, n: int, *, seed: int = 0, blank: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    side = (SIZE // 2 if blank else SIZE) * profile.camera.um_per_px
    for i in range(n):
        spec = (FieldSpec(height_um=side, width_um=side, rbc_per_10k_um2=0.0, wbc_count=0, platelets_per_100_rbc=0.0)
                if blank else FieldSpec(height_um=side, width_um=side, wbc_count=1))
        img = render(compose_field(spec, seed=seed + i), profile, seed=seed + i).image
        Image.fromarray(img).save(folder / f"{profile.name}_{seed + i:02d}.png")  # no pixel size in the file
    return folder


def _edge_sigma_um(profile: ScannerProfile) -> float:
    """Equivalent Gaussian σ (µm) of the profile's edge: a slanted step of red-cell stain, fitted like calibrate."""
    um = profile.camera.um_per_px
    n, k = 256, 4
    fine = um / k
    yy, xx = np.mgrid[0 : n * k, 0 : n * k] * fine
    ang = np.deg2rad(5.0)
    inside = (xx - n * um / 2) * np.cos(ang) - (yy - n * um / 2) * np.sin(ang) < 0
    ab = np.zeros((len(ABSORBERS), n * k, n * k), np.float32)
    ab[ABSORBERS.index("eosin")] = 0.45 * inside
    ab[ABSORBERS.index("hemoglobin")] = 0.55 * inside
    maps = AbsorberMaps(ab, np.zeros((n * k, n * k), np.int32), np.zeros((n * k, n * k), np.uint8), fine)
    g = (render(maps, profile, seed=0, ground_truth=False).image[..., 1] / 255.0) ** 2.2
    py, px = (np.mgrid[0:n, 0:n] + 0.5) * um
    d = ((px - n * um / 2) * np.cos(ang) - (py - n * um / 2) * np.sin(ang)) / um
    rows = (py > 20 * um) & (py < (n - 20) * um)
    glass, cell = np.median(g[rows & (d > 20)]), np.median(g[rows & (d < -20)])
    sel = rows & (np.abs(d) < 20)
    return float(fit_edge_spread(d[sel], ((glass - g) / (glass - cell))[sel])) * um


def _glass_noise(profile: ScannerProfile) -> np.ndarray:
    """Per-channel noise (8-bit levels) of a blank field: noisy minus noise-free rendering."""
    side = 256 * profile.camera.um_per_px
    spec = compose_field(FieldSpec(height_um=side, width_um=side, rbc_per_10k_um2=0.0, wbc_count=0,
                                   platelets_per_100_rbc=0.0), seed=0)
    quiet = profile.model_dump()
    quiet["camera"].update(read_noise_e=0.0, full_well_e=1e6)
    a = render(spec, profile, seed=1).image.astype(float)
    b = render(spec, ScannerProfile.model_validate(quiet), seed=1).image.astype(float)
    return (a - b).reshape(-1, 3).std(axis=0)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    """Six fields of the known profile and one unreadable file."""
    folder = _write_fields(tmp_path_factory.mktemp("lab") / "images", LAB, N_FIELDS)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


@pytest.fixture(scope="module")
def cal(lab_dir) -> ScannerCalibration:
    return calibrate_scanner(lab_dir)


def test_recovers_the_pixel_size_within_5_percent(cal):
    # Red-cell ruler on twin fields: +2-3 % (twin red cells average a little over 7.5 µm after blur).
    px = cal.pixel_size
    assert px.source.startswith("red cells")
    assert abs(px.um_per_px / LAB.camera.um_per_px - 1.0) < 0.05, px
    assert px.n_images == N_FIELDS and px.n_cells >= 3 * N_FIELDS and px.metadata_um_per_px is None
    assert 0.0 < px.rel_error < 0.05 and px.confidence == "high"


def test_recovers_the_blur_within_20_percent(cal):
    truth = _edge_sigma_um(LAB)  # ~0.29 µm for 0.6 µm defocus at NA 0.95
    assert abs(cal.resolution.blur_sigma_um / truth - 1.0) < 0.20, (cal.resolution, truth)
    sharp = _edge_sigma_um(_profile(0.2, defocus_um=0.0))
    assert truth > 1.4 * sharp  # the defocus is there to be measured


def test_recovers_the_glass_noise_within_20_percent(cal):
    truth = _glass_noise(LAB)
    got = np.array(cal.noise.sd_8bit)
    assert np.all(np.abs(got / truth - 1.0) < 0.20), (got, truth)


def test_stain_colour_and_skipped_files(cal, lab_dir):
    basis = StainBasis.from_dict(cal.stain.basis)  # a usable basis
    assert basis.vectors_.shape == (3, 3)
    # Clear glass of the profile: background_level 0.9 linear, auto white balance -> ~243 in each channel.
    assert all(abs(v - 243) <= 6 for v in cal.stain.white_point_8bit), cal.stain.white_point_8bit
    assert {"nuclear_purple", "red_cell_eosin"} <= set(cal.stain.levels)
    assert [Path(s["path"]).name for s in cal.skipped] == ["broken.png"]
    assert cal.n_images == N_FIELDS and cal.images_dir == str(lab_dir.resolve())
    assert cal.nearest_preset == "wsi-40x"
    assert any("pixel size" in line and "red cells" in line for line in cal.summary_lines())


def test_save_load_and_version_mismatch(cal, tmp_path):
    path = cal.save(tmp_path / "lab.yaml")
    back = ScannerCalibration.load(path)
    assert back == cal
    with pytest.raises(OutputExistsError):
        cal.save(path)
    data = yaml.safe_load(path.read_text())
    assert data["schema"] == SCHEMA and data["version"]
    data["schema"] = "hemotwin.scanner/0"
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as err:
        ScannerCalibration.load(old)
    assert str(old) in str(err.value) and "hemotwin.scanner/0" in str(err.value) and SCHEMA in str(err.value)
    other = tmp_path / "profile.yaml"
    LAB.save(other)  # a twin profile is not a scanner file
    with pytest.raises(InputError, match="scanner file"):
        ScannerCalibration.load(other)


def test_refuses_too_few_images(lab_dir, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(lab_dir.glob("lab-*.png"))[:4]:
        shutil.copy(p, few / p.name)
    out = tmp_path / "few.yaml"
    with pytest.raises(InputError, match="at least 5 images") as err:
        calibrate_scanner(few, out=out)
    assert str(few.resolve()) in str(err.value) and "found 4" in str(err.value)
    assert not out.exists()


def test_refuses_images_without_red_cells(tmp_path):
    blank = _write_fields(tmp_path / "blank", LAB, 5, blank=True)
    out = tmp_path / "blank.yaml"
    with pytest.raises(InputError, match="0 of 5 images had enough") as err:
        calibrate_scanner(blank, out=out)
    assert str(blank.resolve()) in str(err.value)
    assert not out.exists()


def test_refuses_mixed_scanners(lab_dir, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in sorted(lab_dir.glob("lab-*.png"))[:3]:
        shutil.copy(p, mixed / p.name)
    _write_fields(mixed, _profile(0.3), 3, seed=20)  # another magnification: 0.3 µm/px
    out = tmp_path / "mixed.yaml"
    with pytest.raises(InputError, match="one scanner") as err:
        calibrate_scanner(mixed, out=out)
    assert "CV" in str(err.value)
    assert not out.exists()
    # A pixel size the user gives outranks the ruler: its spread is then noted, not fatal (on crowded
    # real fields, e.g. BCCD's, the ruler spreads widely on one scanner), and the glass colours decide.
    given = calibrate_scanner(mixed, um_per_px=0.2)
    assert given.pixel_size.um_per_px == pytest.approx(0.2) and any("ruler varies" in n for n in given.notes)


def test_training_target_from_the_scanner_file(cal, tmp_path):
    path = cal.save(tmp_path / "lab.yaml")
    folder, um = training_target(path)
    assert folder == Path(cal.images_dir) and um == cal.pixel_size.um_per_px
    assert training_target(None, target="t", target_um_per_px=0.1) == (Path("t"), 0.1)
    with pytest.raises(InputError, match="no target folder"):
        training_target(path, target=tmp_path)


def test_analyze_uses_the_scanner_pixel_size(cal, lab_dir, tmp_path):
    import json

    from hemotwin.diagnosis.analyze import AnalysisConfig, analyze

    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(lab_dir.glob("lab-*.png"))[0], one / "field.png")
    path = cal.save(tmp_path / "lab.yaml")
    res = analyze(one, tmp_path / "r", config=AnalysisConfig(scanner=str(path), calibration="none"))
    data = json.loads(Path(res["json"]).read_text())
    field = data["sample"]["fields"][0]
    assert field["um_per_px"] == pytest.approx(cal.pixel_size.um_per_px)
    assert field["um_per_px_source"] == "option (scanner file lab.yaml)"
    assert data["provenance"]["inputs"]["scanner"] == str(path.resolve())
    assert len(data["provenance"]["inputs"]["scanner_sha256"]) == 64
    with pytest.raises(InputError, match="not both"):
        analyze(one, tmp_path / "r2", config=AnalysisConfig(scanner=str(path), um_per_px=0.2, calibration="none"))


# ------------------------------------------------------------------------------------------- CLI
def test_cli_calibrate_writes_and_refuses_to_overwrite(lab_dir, tmp_path):
    out = tmp_path / "my_scanner.yaml"
    res = runner.invoke(app, ["calibrate", str(lab_dir), "--out", str(out)])
    # broken.png cannot be read: the profile is written from the rest, and the run ends "finished with
    # skipped items" (exit 3), naming the file.
    assert res.exit_code == 3, res.output
    flat = _flat(res)
    assert "pixelsize" in flat and "redcellsin6images" in flat and "confidence" in flat and "broken.png" in flat
    assert ScannerCalibration.load(out).n_images == N_FIELDS
    res = runner.invoke(app, ["calibrate", str(lab_dir), "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in _flat(res) and "my_scanner.yaml" in _flat(res)


def test_cli_calibrate_refusals_name_the_folder(tmp_path):
    blank = _write_fields(tmp_path / "blank", LAB, 5, blank=True)
    out = tmp_path / "s.yaml"
    res = runner.invoke(app, ["calibrate", str(blank), "--out", str(out)])
    assert res.exit_code == 2 and "IMAGES" in _flat(res) and "blank" in _flat(res) and "redcells" in _flat(res)
    assert not out.exists()
    res = runner.invoke(app, ["calibrate", str(tmp_path / "missing"), "--out", str(out)])
    assert res.exit_code == 2 and "missing" in _flat(res)


def test_cli_scanner_file_errors(cal, tmp_path):
    path = cal.save(tmp_path / "lab.yaml")
    data = yaml.safe_load(path.read_text())
    data["schema"] = "hemotwin.scanner/9"
    old = tmp_path / "future.yaml"
    old.write_text(yaml.safe_dump(data))
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.hemo")]
    res = runner.invoke(app, [*args, "--scanner", str(old)])
    assert res.exit_code == 2 and "future.yaml" in _flat(res) and "hemotwin.scanner/9" in _flat(res)
    # The scanner file is the one way to name a target scanner: the older folder options are gone.
    res = runner.invoke(app, ["train", "--help"])
    assert "--scanner" in _flat(res) and "--target" not in _flat(res)
    res = runner.invoke(app, ["analyze", str(tmp_path), "--out", str(tmp_path / "r"), "--scanner", str(old)])
    assert res.exit_code == 2 and "future.yaml" in _flat(res)
