"""`hifilight masks`: nothing written when a photo fails."""

from conftest import EXAMPLE_SUBJECT

from hifilight.cli import main


def test_masks_write_nothing_when_one_photo_fails_and_rerun_after_the_fix(tmp_path, capsys):

    photos = tmp_path / "photos"
    photos.mkdir()
    good = sorted(EXAMPLE_SUBJECT.glob("*.jpg"))[:2]
    for p in good:
        (photos / p.name).write_bytes(p.read_bytes())
    (photos / "zz.jpg").write_bytes(good[0].read_bytes()[:2000])  # truncated: fails after the good ones
    out = tmp_path / "masks"
    args = ["masks", "--data.subject_dir", str(photos), "--masks", "grabcut", "--out", str(out)]
    assert main(args) == 2 and "zz.jpg: unreadable or truncated" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())  # no partial set to block the rerun
    (photos / "zz.jpg").unlink()
    assert main(args) == 0 and len(list(out.glob("*.png"))) == 3  # two masks and overlay.png
