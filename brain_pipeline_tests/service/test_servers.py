"""The disposable servers' finders and the skip rule: a missing program skips the tests that
need it with how to install it, except under CI=true, where it fails them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from brain_pipeline_tests.service import servers


@pytest.mark.parametrize("program", ["postgres", "rabbitmq", "chromium"])
def test_a_missing_program_skips_with_how_to_install_it(program: str, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed: `apt-get install"):
        servers.unavailable(program)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(
        pytest.fail.Exception, match=f"CI=true: {re.escape(servers.INSTALL[program])}"
    ):
        servers.unavailable(program)


def test_the_finders_take_an_override_and_ignore_what_is_not_a_program(
    tmp_path: Path, monkeypatch
) -> None:
    for name in ("pg_ctl", "initdb", "rabbitmq-server", "chromium"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv(servers.PG_BIN_ENV, str(tmp_path))
    monkeypatch.setenv(servers.RABBITMQ_SERVER_ENV, str(tmp_path / "rabbitmq-server"))
    monkeypatch.setenv(servers.CHROMIUM_ENV, str(tmp_path / "chromium"))
    assert servers.postgres_bindir() == tmp_path
    assert servers.rabbitmq_server() == tmp_path / "rabbitmq-server"
    assert servers.chromium() == tmp_path / "chromium"
    (tmp_path / "chromium").chmod(0o644)  # not executable: not a program
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert servers.chromium() != tmp_path / "chromium"
