"""The real-CT negatives flags every method with negatives shares (:class:`lesionseg.repeatable.NegativesSettings`):
repeated flags add up, paths survive the card's JSON, the probabilities are checked."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from lesionseg.errors import InputError
from lesionseg.methods.s4c.train import S4CTrainSettings
from lesionseg.methods.smalllesion.train import SmallLesionTrainSettings


@pytest.mark.parametrize("settings_class", [S4CTrainSettings, SmallLesionTrainSettings])
def test_settings_take_repeated_negatives_and_check_probabilities(settings_class):
    parser = argparse.ArgumentParser()
    settings_class.add_arguments(parser, "method options")
    args = parser.parse_args(["--negatives", "A", "--negatives", "B", "C", "--exclude-negatives", "x",
                              "--exclude-negatives", "y", "--intensity-augment", "0.5"])
    settings = settings_class.from_namespace(args)
    assert settings.negatives == (Path("A"), Path("B"), Path("C")) and settings.exclude_negatives == ("x", "y")
    assert json.loads(json.dumps(settings.to_dict()))["negatives"] == ["A", "B", "C"]
    assert settings_class.from_dict(settings.to_dict()) == settings
    empty = settings_class.from_namespace(parser.parse_args([]))
    assert empty.negatives is None and empty.negative_share == 0.25 and empty.intensity_augment == 0.0
    for flag, value in (("negative_share", 1.5), ("intensity_augment", -0.1)):
        with pytest.raises(InputError, match=f"--{flag.replace('_', '-')} is a probability in 0..1"):
            settings_class(**{flag: value})
