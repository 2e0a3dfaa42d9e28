"""What a job class may be, checked when it is defined (no database needed)."""

from __future__ import annotations

import pytest

import delayed
from delayed.errors import JobDefinitionError
from delayed.registry import find


def test_an_async_perform_is_refused_at_definition() -> None:
    with pytest.raises(
        JobDefinitionError, match=r"AsyncJob.perform is `async def`: async jobs are not supported yet"
    ):

        class AsyncJob(delayed.Job, name="tests.unit.async_job"):
            async def perform(self) -> None: ...

    assert find("tests.unit.async_job") is None, "nothing registered"


def test_an_inherited_async_perform_is_refused_too() -> None:
    class Base(delayed.Job, abstract=True):
        async def perform(self) -> None: ...

    with pytest.raises(JobDefinitionError, match="async jobs are not supported yet"):

        class Concrete(Base, name="tests.unit.inherited_async"):
            pass

    assert find("tests.unit.inherited_async") is None


def test_an_async_generator_or_generator_perform_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match="async jobs are not supported yet"):

        class AsyncGen(delayed.Job, name="tests.unit.async_gen"):
            async def perform(self):  # type: ignore[override]
                yield 1

    with pytest.raises(JobDefinitionError, match=r"generator function .* would never run its body"):

        class Gen(delayed.Job, name="tests.unit.gen"):
            def perform(self):  # type: ignore[override]
                yield 1

    assert find("tests.unit.async_gen") is None and find("tests.unit.gen") is None


def test_the_job_decorator_refuses_an_async_function() -> None:
    with pytest.raises(JobDefinitionError, match=r"@delayed.job function .*fetch is `async def`"):

        @delayed.job(name="tests.unit.async_function")
        async def fetch(url: str) -> None: ...

    assert find("tests.unit.async_function") is None


def test_a_plain_perform_is_fine() -> None:
    class Plain(delayed.Job, name="tests.unit.plain"):
        def perform(self, x: int) -> int:
            return x * 2

    assert find("tests.unit.plain") is Plain
    assert Plain.perform_now(21) == 42
