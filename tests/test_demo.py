"""The demo, as `./scripts/demo` runs it: a shared scenario through the whole local stack."""

from bot.cli import main
from bot.sandbox.paths import shared_scenarios_dir


def test_demo_replays_a_scenario_and_prints_the_thread(capsys, prometheus_binary, alertmanager_binary):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "sandbox cluster dc1-prod" in out and "read back 6 pods" in out
    assert "samples backfilled" in out
    assert "INC-1 · KubePodCrashLooping" in out
    assert "Namespace    orders" in out and "Service      orders-api" in out
    assert "Cluster      dc1-prod" in out


def test_demo_on_another_scenario(capsys, prometheus_binary, alertmanager_binary):
    scenario = shared_scenarios_dir() / "storefront-rollout-image-not-found.yaml"
    assert main(["demo", "--scenario", str(scenario)]) == 0
    assert "Service      storefront" in capsys.readouterr().out


def test_demo_with_a_missing_or_broken_scenario_says_so(capsys, tmp_path):
    assert main(["demo", "--scenario", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: x\ncolour: blue\n")
    assert main(["demo", "--scenario", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "Traceback" not in err
