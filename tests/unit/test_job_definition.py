"""What a job class may be, checked when it is defined (no database needed)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import delayed
from delayed.errors import JobDefinitionError
from delayed.registry import async_names, find


def test_an_async_perform_makes_an_async_job() -> None:
    class AsyncJob(delayed.Job, name="tests.unit.async_job"):
        async def perform(self) -> None: ...

    assert find("tests.unit.async_job") is AsyncJob and AsyncJob.is_async
    assert "tests.unit.async_job" in async_names()


def test_an_inherited_async_perform_makes_an_async_job_too() -> None:
    class Base(delayed.Job, abstract=True):
        async def perform(self) -> None: ...

    class Concrete(Base, name="tests.unit.inherited_async"):
        pass

    assert Concrete.is_async and not Base.is_async


def test_an_async_generator_or_generator_perform_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match=r"async generator function .* would never run its body"):

        class AsyncGen(delayed.Job, name="tests.unit.async_gen"):
            async def perform(self):  # type: ignore[override]
                yield 1

    with pytest.raises(JobDefinitionError, match=r"generator function .* would never run its body"):

        class Gen(delayed.Job, name="tests.unit.gen"):
            def perform(self):  # type: ignore[override]
                yield 1

    assert find("tests.unit.async_gen") is None and find("tests.unit.gen") is None


def test_the_job_decorator_makes_an_async_function_an_async_job() -> None:
    @delayed.job(name="tests.unit.async_function")
    async def fetch(url: str) -> str:
        return url

    assert fetch.is_async and fetch.perform_now("u") == "u"


def test_a_plain_perform_is_fine() -> None:
    class Plain(delayed.Job, name="tests.unit.plain"):
        def perform(self, x: int) -> int:
            return x * 2

    assert find("tests.unit.plain") is Plain
    assert Plain.perform_now(21) == 42


# ----------------------------------------------------------------------------- one class per name
def test_a_second_class_under_a_taken_name_is_refused_naming_both() -> None:
    class First(delayed.Job, name="tests.unit.taken"):
        def perform(self) -> None: ...

    with pytest.raises(JobDefinitionError) as caught:

        class Second(delayed.Job, name="tests.unit.taken"):
            def perform(self) -> None: ...

    message = str(caught.value)
    assert "'tests.unit.taken' is already taken by" in message
    assert "First" in message and "Second" in message and "another name" in message
    assert find("tests.unit.taken") is First, "the first class keeps its jobs"


def test_a_function_job_under_a_taken_name_is_refused() -> None:
    class Owner(delayed.Job, name="tests.unit.taken_by_class"):
        def perform(self) -> None: ...

    with pytest.raises(JobDefinitionError, match="already taken"):

        @delayed.job(name="tests.unit.taken_by_class")
        def intruder() -> None: ...

    assert find("tests.unit.taken_by_class") is Owner


def _write_module(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(body)


@pytest.fixture
def scratch_path(tmp_path: Path) -> Iterator[Path]:
    """tmp_path on sys.path; the modules imported from it are forgotten afterwards."""
    before = set(sys.modules)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    if str(tmp_path / "pkg") in sys.path:
        sys.path.remove(str(tmp_path / "pkg"))
    for name in set(sys.modules) - before:
        del sys.modules[name]


JOB_MODULE = """
import delayed

class Reloadable(delayed.Job, name="tests.unit.reloadable{suffix}"):
    def perform(self) -> None: ...
"""


def test_the_same_class_defined_again_by_a_reload_replaces_the_first(scratch_path: Path) -> None:
    _write_module(scratch_path, "reload_jobs_a", JOB_MODULE.format(suffix=""))
    module = importlib.import_module("reload_jobs_a")
    first = module.Reloadable
    reloaded = importlib.reload(module)
    assert reloaded.Reloadable is not first
    assert find("tests.unit.reloadable") is reloaded.Reloadable


def test_one_file_imported_under_two_module_names_is_refused_saying_so(scratch_path: Path) -> None:
    """Chosen: not the same class. The two imports are two classes with two copies of the
    module's state; the error names the file and both module names."""
    package = scratch_path / "pkg"
    _write_module(package, "__init__", "")
    _write_module(package, "twice_jobs", JOB_MODULE.format(suffix="_twice"))
    sys.path.insert(0, str(package))
    importlib.import_module("pkg.twice_jobs")
    with pytest.raises(JobDefinitionError) as caught:
        importlib.import_module("twice_jobs")
    message = str(caught.value)
    assert "imported under two module names (pkg.twice_jobs and twice_jobs)" in message
    assert str(package / "twice_jobs.py") in message
    assert find("tests.unit.reloadable_twice").__module__ == "pkg.twice_jobs"
