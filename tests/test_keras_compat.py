"""keras_compat: the trainer's uses of private Keras code refuse a Keras outside the tested range."""

from __future__ import annotations

import keras
import pytest

from shardkit.train import keras_compat


def test_the_installed_keras_is_in_the_tested_range() -> None:
    keras_compat.check_version(keras.__version__)


@pytest.mark.parametrize("version", ["3.5.0", "3.16.0", "4.0.0"])
def test_a_keras_outside_the_tested_range_is_refused_in_one_line(version: str) -> None:
    least, below = keras_compat.TESTED_KERAS
    with pytest.raises(ImportError) as e:
        keras_compat.check_version(version)
    assert str(e.value) == (
        f"keras {version} is outside the range shardkit-train is tested with (>={least},<{below}); "
        f"install one in it: pip install 'keras>={least},<{below}'"
    )


def test_the_pyproject_pin_is_the_tested_range() -> None:
    import pathlib
    import re

    least, below = keras_compat.TESTED_KERAS
    text = (pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text()
    pins = re.findall(r'"keras([^"]*)"', text)
    assert pins and set(pins) == {f">={least},<{below}"}
