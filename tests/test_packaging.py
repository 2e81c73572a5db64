"""Installed as users install it: a wheel, non-editable, used from another folder.

The wheel is built offline from this checkout and installed with --no-deps into a fresh virtual
environment that borrows the test environment's third-party packages (a .pth line), never this
checkout: named configs, the DeepSpeed JSONs and the console script must come from the wheel.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("clipbert_emo-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # Third-party packages from the test environment; its editable hook for clipbert_emo is not a .pth
    # processed here (only the new environment's own site folder is), so the wheel is what imports.
    (site / "_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr[-3000:]
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere


def _run(venv, cwd, *cmd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(venv / "bin" / cmd[0]), *cmd[1:]], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def test_named_configs_resolve_from_another_folder_with_the_wheel_s_own_files(installed):
    venv, elsewhere = installed
    code = ("import clipbert_emo; from clipbert_emo.config import load_config, named_configs, CONFIG_DIR; "
            "c = load_config('meld', ['data.root=/data/MELD.Raw'], preset='cpu'); "
            "print(clipbert_emo.__file__, c.data.format, c.model.backbone, len(named_configs()), "
            "sorted(p.name for p in (CONFIG_DIR / 'deepspeed').glob('*.json')))")
    r = _run(venv, elsewhere, "python", "-c", code)
    assert r.returncode == 0, r.stderr
    where, fmt, backbone, count, *_ = r.stdout.split()
    assert str(venv) in where and str(ROOT) not in where, "imported from the wheel, not the checkout"
    assert (fmt, backbone) == ("meld", "efficientnet_lite0"), "the named config and the named preset"
    assert int(count) == len(list((ROOT / "clipbert_emo" / "configs").glob("*.yaml")))
    assert "zero1.json" in r.stdout and "zero3.json" in r.stdout


def test_console_script_and_named_config_on_the_command_line(installed):
    venv, elsewhere = installed
    r = _run(venv, elsewhere, "clipbert-emo", "finetune", "--config", "synthemo_cpu", "--help")
    assert r.returncode == 0 and "name of a shipped config" in " ".join(r.stdout.split()), r.stderr
    # A named config is resolved (and validated) before anything runs: a bad override names itself.
    r = _run(venv, elsewhere, "clipbert-emo", "finetune", "--config", "synthemo_cpu", "train.epochz=1")
    assert r.returncode == 2 and "override 'train.epochz=1'" in r.stderr and "Traceback" not in r.stderr
    assert not any(elsewhere.iterdir()), "nothing is written by a refused command"
