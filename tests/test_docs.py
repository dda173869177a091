"""The documentation shows what the code does."""

from pathlib import Path

from smtpgate.cli.init_cmd import render_config

ROOT = Path(__file__).parents[1]


def test_configuration_doc_shows_the_file_init_writes() -> None:
    assert render_config() in (ROOT / "docs" / "configuration.md").read_text()


def test_every_documented_link_exists() -> None:
    import re

    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
