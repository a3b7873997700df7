"""function/framework_patch.py's adjustments to functions-framework stop the start-up, rather than
silently answering text/plain, when an upgrade removed what they replace. (That they work
is shown by what copies answer: tests/test_framing.py.)"""

from __future__ import annotations

import pytest


def test_the_framework_patch_refuses_a_functions_framework_that_no_longer_has_what_it_replaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import functions_framework.aio

    from function.framework_patch import FrameworkChanged, answer_framework_errors_as_problems

    monkeypatch.delattr(functions_framework.aio, "Starlette")  # as if an upgrade renamed it
    with pytest.raises(FrameworkChanged):
        answer_framework_errors_as_problems()
