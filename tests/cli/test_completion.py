"""Shell completion: `smtpgate --show-completion` / `--install-completion`, driven through a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.cli.conftest import SMTPGATE
from tests.conftest import need


def bash(script: str, home: Path) -> subprocess.CompletedProcess[str]:
    need(shutil.which("bash") is not None, "bash is not installed")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("_SMTPGATE")}, "HOME": str(home),
           "PATH": f"{Path(SMTPGATE).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    # `$(...)` runs smtpgate from a bash subshell, so it detects bash as its shell.
    return subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)


COMPLETE = """
complete_words() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _smtpgate_completion smtpgate; printf '%s\\n' "${{COMPREPLY[@]}}"; }}
echo "commands:"; complete_words smtpgate app-p
echo "subcommands:"; complete_words smtpgate app-password cr
echo "options:"; complete_words smtpgate serve --tls
"""


def test_show_completion_completes_commands_subcommands_and_options(tmp_path: Path) -> None:
    done = bash('script=$(smtpgate --show-completion) && eval "$script"' + COMPLETE.format(), tmp_path)
    assert done.returncode == 0, done.stderr
    sections = _sections(done.stdout)
    assert sections["commands"] == ["app-password"]
    assert sections["subcommands"] == ["create"]
    assert sections["options"] == ["--tls-port"]


def test_install_completion_writes_a_script_bash_loads(tmp_path: Path) -> None:
    done = bash("out=$(smtpgate --install-completion) && echo \"$out\"", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "bash completion installed in" in done.stdout
    script = tmp_path / ".bash_completions" / "smtpgate.sh"
    assert "_SMTPGATE_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    loaded = bash("source ~/.bashrc; complete -p smtpgate" + COMPLETE.format(), tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "-F _smtpgate_completion smtpgate" in loaded.stdout
    assert _sections(loaded.stdout)["subcommands"] == ["create"]


def _sections(text: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.endswith(":") and line[:-1].isalpha():
            current = line[:-1]
            result[current] = []
        elif current and line:
            result[current].append(line)
    return result
