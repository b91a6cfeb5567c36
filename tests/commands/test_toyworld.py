"""`hifilight toyworld train`: the trainers it dispatches to."""

from hifilight.cli import main


def test_toyworld_train_dispatches_to_the_trainers_and_names_them(capsys):
    assert main(["toyworld", "train", "nope"]) == 2
    assert "train nope: unknown trainer; choose one of toysd, toysd2, toyclip, models" in capsys.readouterr().err
    # the trainer's typed arguments, checked like every command's: exit status 2 and one line naming the flag and
    # the trainer (v1's trainer had an argparse parser of its own, which exited with SystemExit(2))
    assert main(["toyworld", "train", "toysd", "--latent_scale", "0"]) == 2
    err = capsys.readouterr().err
    assert "error: --latent_scale must be > 0" in err and "hifilight toyworld train toysd --help" in err
