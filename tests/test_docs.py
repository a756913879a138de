"""The docs route and cannot drift: the generated config reference matches the code, the README stays short
and every page it links to exists."""

import re

from conftest import REPO


def test_the_config_reference_page_is_up_to_date():
    from medref_cli.config_reference import render

    page = (REPO / "docs" / "config-reference.md").read_text()
    assert page == render(), ("docs/config-reference.md is out of date: run "
                              "`python -m medref_cli.config_reference > docs/config-reference.md`")


def test_the_reference_names_every_field_with_its_check():
    from dataclasses import fields

    from medref_cli.config import MethodConfig, ModelConfig, TrainConfig
    from medref_cli.config_reference import render

    page = render()
    for cls in (ModelConfig, TrainConfig, MethodConfig):
        for f in fields(cls):
            assert f"| `{f.name}` |" in page, f.name
    assert "a multiple of 32 between 32 and 2048" in page and "| `side_gate` |" in page


def test_the_readme_is_short_and_every_page_it_links_exists():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(((?:docs|results)/[^)#]+)\)", readme)
    assert {"docs/getting-started.md", "docs/config-reference.md", "docs/troubleshooting.md"} <= set(links)
    for link in links:
        assert (REPO / link).is_file(), link
    for page in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), f"{page.name} -> {target}"


def test_help_texts_come_from_the_code(cli):
    """--preset, --config, --resume and --recipe name what config.py holds (one source; they lagged it before)."""
    import re

    from medref_cli import config as c

    for command in ("pretrain", "semi-train"):
        res = cli(command, "--help")
        text = re.sub(r"[\s│]+", " ", res.output)  # Rich wraps and boxes the help
        assert res.exit_code == 0
        assert f"{' | '.join(c.PRESETS)} (default: {c.DEFAULT_PRESET};" in text
        assert all(f"{a}.{b}" in text for a, b in c.RESUMABLE)
        assert "sections " + ", ".join(s + ":" for s in c.CONFIG_SECTIONS) in text
    text = re.sub(r"[\s│]+", " ", cli("semi-train", "--help").output)
    assert " | ".join(c.RECIPES) in text


def test_the_training_commands_share_one_option_list():
    """pretrain and semi-train are two entry points of one stage: every pretrain option is a semi-train option,
    declared once (the same annotation), and semi-train adds only its method's options."""
    import inspect

    from medref_cli.cli import train

    pre, semi = (inspect.signature(f).parameters for f in (train.pretrain, train.semi_train))
    shared = inspect.signature(train.shared_options, eval_str=True).parameters
    assert list(pre) == list(shared) and set(pre) < set(semi)
    assert all(semi[k].annotation is pre[k].annotation is shared[k].annotation for k in pre)
    assert set(semi) - set(pre) == set(inspect.signature(train.semi_train_options).parameters)
