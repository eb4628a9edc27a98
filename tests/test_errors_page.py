"""Every error points to its section of docs/errors.md, and every section exists."""

from __future__ import annotations

import inspect
import re

import pytest

import durably
import durably.errors
from support import ROOT

PAGE = (ROOT / "docs" / "errors.md").read_text()
SECTIONS = set(re.findall(r"^## (\w+)$", PAGE, re.MULTILINE))
ERRORS = [
    cls
    for cls in vars(durably.errors).values()
    if inspect.isclass(cls) and issubclass(cls, durably.DurablyError)
]


def test_every_error_has_a_section_and_every_section_an_error() -> None:
    assert {cls.__name__ for cls in ERRORS} == SECTIONS
    # Each is also a public name.
    assert {cls.__name__ for cls in ERRORS} <= set(durably.__all__)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_the_message_ends_with_the_pointer_to_the_section(cls: type) -> None:
    error = cls.__new__(cls)
    Exception.__init__(error, "something was wrong")
    if cls is durably.RecordedError:
        assert str(error) == "something was wrong"  # another error's message, as it was
    else:
        assert str(error) == (f"something was wrong [docs/errors.md#{cls.__name__.lower()}]")


def test_an_error_made_by_a_user_points_to_the_class_it_extends() -> None:
    class PaymentDeclined(durably.InvalidArgument):
        pass

    assert str(PaymentDeclined("card declined")).endswith("[docs/errors.md#invalidargument]")


def test_a_real_refusal_carries_its_pointer() -> None:
    app = durably.App("postgresql://nobody@127.0.0.1:1/none", schema="ok")
    with pytest.raises(durably.ConfigurationError) as refused:
        app.workflow(name="")(lambda: None)
    assert str(refused.value).endswith("[docs/errors.md#configurationerror]")
