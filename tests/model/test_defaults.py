"""Every rule's adaptation defaults are the setting its committed sweep chose on the `tune`
speakers (docs/bench/sweep-<rule>.json, written by scripts/sweep-personalize.py)."""

import json
from pathlib import Path

import pytest
from tracekws.model.adapt import DEFAULT_EPOCHS
from tracekws.model.bench.personalize import sweep_settings
from tracekws.model.rules import NAMES, defaults

LOGS = sorted(Path(__file__).resolve().parents[2].glob("docs/bench/sweep-*.json"))
JOINT = {p.stem.removeprefix("joint-"): json.loads(p.read_text()) for p in
         Path(__file__).resolve().parents[2].glob("docs/bench/room/joint-*.json")
         if not p.stem.endswith("-pooled")}


def test_every_rule_with_defaults_has_a_sweep_log():
    swept = {json.loads(p.read_text())["rule"] for p in LOGS}
    assert set(NAMES) <= swept


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_defaults_are_the_chosen_setting(log):
    """A rule's own sweep (sweep-<rule>.json) decides every setting it chose; a side sweep
    (sweep-<rule>-<topic>.json, e.g. epochs) decides only what it varied and the rule's own
    sweep did not, so re-sweeping the rates on a new model does not contradict it."""
    data = json.loads(log.read_text())
    assert data["speakers"] == "tune" and data["chosen"] is not None
    chosen = data["chosen"]
    hp = defaults(data["rule"])
    decides = set(chosen)
    if log.stem != f"sweep-{data['rule']}":
        main = json.loads((log.parent / f"sweep-{data['rule']}.json").read_text())
        decides = set(sweep_settings(data["rows"])[1]) - set(sweep_settings(main["rows"])[1])
        assert decides, f"{log.name} decides nothing its rule's own sweep does not"
    decides -= set(JOINT.get(data["rule"], {}).get("reference", ()))  # test below
    for key, value in chosen.items():
        if key in hp and key in decides and key != "norm_prior":  # prior: joint sweep below
            assert hp[key] == value, (data["rule"], key)
    assert chosen["epochs"] == DEFAULT_EPOCHS
    # every swept hyper-parameter is a default (nothing chosen is left out)
    swept = set(sweep_settings(data["rows"])[0]) - {"epochs"}
    assert swept <= set(hp), swept - set(hp)


def test_joint_choices_are_the_defaults():
    """A rule whose rates were chosen on clean and room together (scripts/choose-norm-prior.py
    --reference, docs/bench/room/joint-<rule>.json) has those as its defaults: that choice
    overrides what the clean sweep chose for the same settings."""
    for rule, log in JOINT.items():
        hp = defaults(rule)
        for key in log["reference"]:
            assert hp[key] == log["chosen"][key], (rule, key)
        assert log["chosen"]["meets_bounds"]


def test_norm_prior_is_the_chosen_setting_for_every_rule():
    """The feature-normalisation prior: chosen on `tune`, clean and room together
    for the shipped model (docs/bench/norm/v4-chosen.json, written by
    scripts/choose-norm-prior.py); the rule sweeps ran at the prior of their time."""
    root = Path(__file__).resolve().parents[2]
    data = json.loads((root / "docs/bench/norm/v4-chosen.json").read_text())
    assert data["chosen"]["meets_bounds"]
    for rule in NAMES:
        assert defaults(rule)["norm_prior"] == data["chosen"]["norm_prior"], rule
