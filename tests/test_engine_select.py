"""Which core runs (`tcplife.native.loader`), and the engine's optional build: the
compiled engine loads only with the Python core's tables, ``TCPLIFE_CORE`` forces a core,
``tcplife --version`` says which one is active, and ``pip`` builds tcplife without a C
compiler (falling back, and saying why) unless ``TCPLIFE_REQUIRE_ENGINE`` is set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcplife.cli.main import main
from tcplife.native import loader as compiled

from needs import missing

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_load():
    compiled._load.cache_clear()
    yield
    compiled._load.cache_clear()


def _need_engine() -> None:
    try:
        from tcplife import _engine  # noqa: F401
    except ImportError:
        missing("the compiled engine (tcplife._engine: a C compiler at install)")


def test_the_core_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compiled.ENV, raising=False)
    assert compiled.requested() == "auto"
    monkeypatch.setenv(compiled.ENV, "Python")
    assert compiled.requested() == "python" and not compiled.use_engine()
    assert compiled.requested("c") == "c"  # an explicit choice beats the environment
    monkeypatch.setenv(compiled.ENV, "fortran")
    with pytest.raises(ValueError, match="unknown core 'fortran'"):
        compiled.requested()


def test_the_engine_loads_with_the_core_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_engine()
    monkeypatch.delenv(compiled.ENV, raising=False)
    st = compiled.status()
    assert st.built and st.usable, st.reason
    assert compiled.use_engine() and compiled.use_engine("c")
    assert not compiled.use_engine("python")


def test_an_engine_with_other_tables_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_engine()
    from tcplife import _engine

    real = _engine.tables()

    def other() -> dict:
        t = dict(real)
        t["reuse"] = tuple(reversed(t["reuse"]))
        return t

    monkeypatch.setattr(_engine, "tables", other)
    st = compiled.status()
    assert st.built and not st.usable and "refused" in st.reason and "reuse" in st.reason
    assert not compiled.use_engine("auto")
    with pytest.raises(compiled.EngineUnavailable, match="refused"):
        compiled.use_engine("c")
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "core: python" in result.stdout \
        and "refused" in result.stdout


def test_version_says_which_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compiled.ENV, "python")
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].startswith("core: python (TCPLIFE_CORE=python")


def _source_copy(tmp: Path) -> Path:
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for name in ("tcplife", "engine"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    return src


def _wheel(src: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "TCPLIFE_REQUIRE_ENGINE"}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "-v", "-w", str(out), str(src)],
                          capture_output=True, text=True, env=environ, timeout=600)


def test_without_a_compiler_it_installs_on_the_python_core(tmp_path: Path) -> None:
    src = _source_copy(tmp_path)
    done = _wheel(src, tmp_path / "wheels", CC="/bin/false")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "the compiled engine was not built" in log
    (wheel,) = (tmp_path / "wheels").glob("tcplife-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "tcplife/core/tracker.py" in names
    assert not any(n.startswith("tcplife/_engine") for n in names)
    # and CI's setting makes the same build a failure
    failed = _wheel(src, tmp_path / "w2", CC="/bin/false", TCPLIFE_REQUIRE_ENGINE="1")
    assert failed.returncode != 0
