"""`hifilight toyworld train`: the trainers it dispatches to."""

import pytest

from hifilight.cli import main


def test_toyworld_train_dispatches_to_the_trainers_and_names_them(capsys):
    assert main(["toyworld", "train", "nope"]) == 2
    assert "train nope: unknown trainer; choose one of toysd, toysd2, models" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:  # the trainer's own parser, under the hifilight name
        main(["toyworld", "train", "toysd", "--latent_scale", "0"])
    assert exit.value.code == 2 and "hifilight toyworld train toysd: error: --latent_scale" in capsys.readouterr().err
