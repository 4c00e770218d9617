import pytest

from goldmine.cli import build_parser, main
from goldmine.config import GenerateConfig, PretrainConfig, parse_duration
from goldmine.errors import GoldmineError


def test_precedence_defaults_preset_yaml_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("preset: shakespeare-char\nlearning_rate: 0.005\nmax_steps: 300\n")
    cfg = PretrainConfig.load(yaml_path=y, overrides={"max_steps": "40"})
    assert cfg.block_size == 64 and cfg.batch_size == 12          # from the preset
    assert cfg.learning_rate == 0.005                             # YAML over preset
    assert cfg.max_steps == 40                                    # flag over YAML
    assert PretrainConfig.load().max_steps == 1000                # plain defaults


def test_unknown_keys_and_bad_types_name_the_field(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("learning_rat: 0.1\n")
    with pytest.raises(GoldmineError, match=r"c.yaml: unknown option 'learning_rat' \(did you mean 'learning_rate'\?\)"):
        PretrainConfig.load(yaml_path=y)
    with pytest.raises(GoldmineError, match="command line: batch_size: expected int, got 'many'"):
        PretrainConfig.load(overrides={"batch_size": "many"})
    with pytest.raises(GoldmineError, match="precision: 'fp64' is not one of"):
        PretrainConfig.load(overrides={"precision": "fp64"})
    y.write_text("a: [unclosed\n")
    with pytest.raises(GoldmineError, match=r"line \d+: not valid YAML"):
        PretrainConfig.load(yaml_path=y)
    with pytest.raises(GoldmineError, match="config file not found"):
        PretrainConfig.load(yaml_path=tmp_path / "missing.yaml")
    with pytest.raises(GoldmineError, match="unknown preset"):
        PretrainConfig.load(preset="huge")


def test_validation_errors():
    with pytest.raises(GoldmineError, match="top_p"):
        GenerateConfig.load(overrides={"top_p": 1.5})
    with pytest.raises(GoldmineError, match="batch_size: must be >= 1"):
        PretrainConfig.load(overrides={"batch_size": 0})
    with pytest.raises(GoldmineError, match="max_time"):
        PretrainConfig.load(overrides={"max_time": "soon"})


def test_durations():
    assert parse_duration("90") == 90 and parse_duration("2m") == 120
    assert parse_duration("1.5h") == 5400 and parse_duration("30s") == 30


def _subcommands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, (*prefix, name))
            return
    yield prefix, parser


def test_every_command_documents_every_option_with_its_default(capsys):
    commands = list(_subcommands(build_parser()))
    names = {" ".join(c) for c, _ in commands}
    assert {"quickstart", "data sample", "data tokenize", "tokenizer train", "pretrain",
            "generate", "runs list", "runs show", "runs compare"} <= names
    for cmd, parser in commands:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for action in parser._actions:
            if action.dest in ("help",):
                continue
            assert action.help, f"{' '.join(cmd)}: {action.dest} has no help"
            flag = action.option_strings[0] if action.option_strings else action.metavar or action.dest
            assert flag in text, f"{' '.join(cmd)} --help does not show {flag}"
    # config-backed options state their defaults
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    assert "--learning-rate X" in text and "(default: 0.001)" in text
    assert "--resume" in text and "shakespeare-char" in text


def test_shipped_yaml_configs_load():
    from pathlib import Path

    from goldmine.cli import EXAMPLES  # noqa: F401  (the CLI module imports cleanly)
    from goldmine.config import PrepareConfig, QuickstartConfig, TokenizerConfig

    kinds = {"pretrain": PretrainConfig, "generate": GenerateConfig,
             "tokenizer": TokenizerConfig, "quickstart": QuickstartConfig, "data": PrepareConfig}
    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert files, "configs/ ships YAML presets"
    for f in files:
        first = f.read_text().splitlines()[0]
        assert first.startswith("# goldmine "), f"{f.name} opens with the command that uses it"
        cmd = first.split()[2]
        kinds[cmd].load(yaml_path=f)


def test_an_option_given_at_another_archs_default_is_kept():
    from goldmine.config import FinetuneClassifyConfig

    cnn = FinetuneClassifyConfig(arch="cnn").with_arch_defaults()
    assert (cnn.epochs, cnn.learning_rate, cnn.patience) == (30.0, 3e-3, 0)
    typed = FinetuneClassifyConfig.load(None, None, {"arch": "cnn", "epochs": 3.0,
                                                     "learning_rate": 5e-5}).with_arch_defaults()
    assert (typed.epochs, typed.learning_rate, typed.batch_size) == (3.0, 5e-5, 64)
    logreg = FinetuneClassifyConfig.from_preset("logreg").update({"patience": 3})
    assert logreg.with_arch_defaults().patience == 3
    assert FinetuneClassifyConfig().with_arch_defaults().learning_rate == 5e-5
