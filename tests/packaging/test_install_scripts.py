"""installservice.sh and uninstallservice.sh on a scratch root: layout, idempotence, boot hook, refusals."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from installroot import (
    APP,
    BLOCK_BEGIN,
    BLOCK_END,
    CONF,
    RC_LOCAL,
    REPO,
    block_count,
    busybox_path,
    config_values,
    install,
    run_script,
    snapshot,
    uninstall,
)

from btbattery import __version__

SCRIPTS = ("installservice.sh", "uninstallservice.sh", "service/run", "service/log/run")


@dataclass(frozen=True)
class Shell:
    """The shell the scripts run under, and the PATH it sees."""

    argv: Sequence[str]
    path: str | None


@pytest.fixture(params=["sh", "busybox"])
def shell(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Shell:
    if request.param == "sh":
        return Shell(("sh",), None)
    path = busybox_path(tmp_path_factory.mktemp("busybox"))
    if path is None:
        pytest.skip("busybox is not installed")
    return Shell((f"{path}/sh",), path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    target = tmp_path / "root"
    target.mkdir()
    return target


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


# ---- install ----


def test_install_lays_out_the_venus_service(root: Path, shell: Shell) -> None:
    ok(install(root, shell=shell.argv, path=shell.path))

    app = root / APP
    for name in (
        "btbattery/__init__.py",
        "btbattery/cli.py",
        "dbus-btbattery.py",
        "configs/default_config.ini",
    ):
        assert (app / name).is_file(), name
    assert not list(app.rglob("__pycache__"))
    for name in ("service/run", "service/log/run", "uninstallservice.sh"):
        assert os.access(app / name, os.X_OK), name
    assert (app / "service/log/run").read_text() == (REPO / "service/log/run").read_text()
    assert "exec multilog t s25000 n4 /var/log/dbus-btbattery" in (app / "service/log/run").read_text()

    assert os.readlink(root / "etc/dbus-btbattery") == "/data/etc/dbus-btbattery"
    assert os.readlink(root / "service/dbus-btbattery") == "/data/dbus-btbattery/service"
    assert (root / "var/log/dbus-btbattery").is_dir()
    assert block_count(root) == 1
    assert os.access(root / RC_LOCAL, os.X_OK)
    assert (root / RC_LOCAL).read_text().startswith("#!/bin/sh\n")
    # The guide's next step replaces this file; until then it is the guide's parallel LFP settings.
    assert (root / CONF).read_bytes() == (REPO / "configs/parallel_lfp_config.ini").read_bytes()


def test_reinstall_changes_nothing_and_keeps_the_users_config(root: Path, shell: Shell) -> None:
    ok(install(root, shell=shell.argv, path=shell.path))
    config = root / CONF
    config.write_text("[DEFAULT]\nBATTERY_ADDRESSES = 11:22:33:44:55:66\nPOLL_INTERVAL = 2\n")
    before = snapshot(root)
    rc_before = (root / RC_LOCAL).read_bytes()

    ok(install(root, shell=shell.argv, path=shell.path))

    assert (root / RC_LOCAL).read_bytes() == rc_before
    assert block_count(root) == 1
    assert snapshot(root) == before


def test_reinstall_replaces_the_program_but_keeps_runits_state(root: Path) -> None:
    ok(install(root))
    app = root / APP
    (app / "btbattery/removed_in_this_version.py").write_text("")
    supervise = app / "service/supervise"  # runit's state while the service runs
    supervise.mkdir()
    (supervise / "status").write_bytes(b"\x00" * 18)

    ok(install(root))

    assert not (app / "btbattery/removed_in_this_version.py").exists()
    assert (supervise / "status").read_bytes() == b"\x00" * 18
    assert not list(app.glob("**/*.new"))


def test_command_line_addresses_go_into_the_config(root: Path) -> None:
    ok(install(root))
    original = (root / CONF).read_text().splitlines()

    result = ok(install(root, "aa:bb:cc:dd:ee:ff", "00:11:22:33:44:55:/data/etc/dbus-btbattery/pack2.ini"))

    assert config_values(root, "BATTERY_ADDRESSES") == [
        "AA:BB:CC:DD:EE:FF 00:11:22:33:44:55:/data/etc/dbus-btbattery/pack2.ini"
    ]
    changed = [
        (old, new)
        for old, new in zip(original, (root / CONF).read_text().splitlines(), strict=True)
        if old != new
    ]
    assert len(changed) == 1 and changed[0][0].startswith("BATTERY_ADDRESSES")
    assert "pack2.ini does not exist yet" in result.stderr


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ("[DEFAULT]\nPOLL_INTERVAL = 2\n", "[DEFAULT]\nBATTERY_ADDRESSES = {}\nPOLL_INTERVAL = 2\n"),
        ("POLL_INTERVAL = 2\n", "[DEFAULT]\nBATTERY_ADDRESSES = {}\nPOLL_INTERVAL = 2\n"),
        (
            "[DEFAULT]\n; BATTERY_ADDRESSES = AA:AA:AA:AA:AA:AA\nX = 1\n",
            "[DEFAULT]\nBATTERY_ADDRESSES = {}\nX = 1\n",
        ),
        (
            "# BATTERY_ADDRESSES = old\n[DEFAULT]\nBATTERY_ADDRESSES=\n",
            "# BATTERY_ADDRESSES = old\n[DEFAULT]\nBATTERY_ADDRESSES = {}\n",
        ),
    ],
    ids=["no-key", "no-section", "commented-key", "active-key-wins"],
)
def test_addresses_are_set_in_any_users_config(root: Path, existing: str, expected: str) -> None:
    (root / CONF).parent.mkdir(parents=True)
    (root / CONF).write_text(existing)

    ok(install(root, "01:23:45:67:89:AB"))

    assert (root / CONF).read_text() == expected.format("01:23:45:67:89:AB")


@pytest.mark.parametrize(
    "bad",
    [
        "AA:BB:CC:DD:EE",
        "AA:BB:CC:DD:EE:GG",
        "AABBCCDDEEFF",
        "AA:BB:CC:DD:EE:FFX",
        "AA:BB:CC:DD:EE:FF:",
        "AA:BB:CC:DD:EE:FF:pack.ini",
        "AA:BB:CC:DD:EE:FF:/data/pack.txt",
        "AA:BB:CC:DD:EE:FF:/data/my pack.ini",
        "--force",
    ],
)
def test_a_bad_address_changes_nothing(root: Path, bad: str) -> None:
    result = install(root, "11:22:33:44:55:66", bad)
    assert result.returncode != 0
    assert "nothing was changed" in result.stderr or "unknown option" in result.stderr
    assert snapshot(root) == {}

    ok(install(root))
    before = snapshot(root)
    assert install(root, bad).returncode != 0
    assert snapshot(root) == before


def test_a_pack_listed_twice_is_refused(root: Path) -> None:
    result = install(root, "aa:bb:cc:dd:ee:ff", "AA:BB:CC:DD:EE:FF:/data/p.ini")
    assert result.returncode != 0
    assert "AA:BB:CC:DD:EE:FF is listed twice" in result.stderr
    assert snapshot(root) == {}


def test_help_exits_cleanly_without_touching_anything(root: Path) -> None:
    result = ok(install(root, "--help"))
    assert "usage: ./installservice.sh" in result.stdout
    assert snapshot(root) == {}


def test_an_existing_etc_folder_is_adopted(root: Path) -> None:
    etc = root / "etc/dbus-btbattery"
    etc.mkdir(parents=True)
    (etc / "config.ini").write_text("[DEFAULT]\nBATTERY_ADDRESSES = 11:22:33:44:55:66\n")

    ok(install(root))

    assert os.readlink(etc) == "/data/etc/dbus-btbattery"
    assert config_values(root, "BATTERY_ADDRESSES") == ["11:22:33:44:55:66"]


def test_the_block_goes_before_a_final_exit_and_leaves_the_users_lines(root: Path) -> None:
    rc = root / RC_LOCAL
    rc.parent.mkdir(parents=True)
    original = "#!/bin/sh\n# mine\nsome-other-service --start\nexit 0\n"
    rc.write_text(original)

    ok(install(root))
    lines = rc.read_text().splitlines()
    assert lines[:3] == original.splitlines()[:3]
    assert lines[-1] == "exit 0"
    assert lines.index(BLOCK_END) == len(lines) - 2

    ok(uninstall(root))
    assert rc.read_text() == original


def test_a_broken_block_in_rc_local_is_refused(root: Path) -> None:
    rc = root / RC_LOCAL
    rc.parent.mkdir(parents=True)
    rc.write_text(f"#!/bin/sh\n{BLOCK_BEGIN}\necho mine\n")

    result = install(root)

    assert result.returncode != 0
    assert "without its" in result.stderr
    assert rc.read_text() == f"#!/bin/sh\n{BLOCK_BEGIN}\necho mine\n"


# ---- boot ----


def test_the_boot_block_recreates_the_links_after_a_firmware_update(root: Path, shell: Shell) -> None:
    ok(install(root, shell=shell.argv, path=shell.path))
    installed = snapshot(root)
    # A firmware update brings fresh /etc, /service and /var/log; /data stays.
    for wiped in ("etc", "service", "var"):
        shutil.rmtree(root / wiped)
        (root / wiped).mkdir()

    ok(run_script(root / RC_LOCAL, root, shell=shell.argv, path=shell.path))

    assert snapshot(root) == installed


def test_the_boot_block_does_nothing_once_the_program_is_gone(root: Path) -> None:
    ok(install(root))
    block = (root / RC_LOCAL).read_text()
    ok(uninstall(root))
    (root / RC_LOCAL).write_text(block)  # a block left behind, e.g. by a hand-restored rc.local
    before = snapshot(root)

    ok(run_script(root / RC_LOCAL, root))

    assert snapshot(root) == before


# ---- uninstall ----


def test_uninstall_removes_everything_but_the_settings(root: Path, shell: Shell) -> None:
    ok(install(root, "11:22:33:44:55:66", shell=shell.argv, path=shell.path))
    config = (root / CONF).read_bytes()

    ok(uninstall(root, shell=shell.argv, path=shell.path))

    assert not (root / APP).exists()
    assert not os.path.lexists(root / "etc/dbus-btbattery")
    assert not os.path.lexists(root / "service/dbus-btbattery")
    assert block_count(root) == 0
    assert (root / CONF).read_bytes() == config

    # Again: nothing left to do, still fine; then a re-install finds the settings.
    ok(run_script(REPO / "uninstallservice.sh", root, shell=shell.argv, path=shell.path))
    ok(install(root, shell=shell.argv, path=shell.path))
    assert config_values(root, "BATTERY_ADDRESSES") == ["11:22:33:44:55:66"]


GUI_PLUGIN = "data/apps/available/dbus-btbattery/gui-v2/dbus-btbattery.json"
GUI_ENABLED = "data/apps/enabled/dbus-btbattery"


def test_the_gui_plugin_is_installed_enabled_and_removed(root: Path, shell: Shell) -> None:
    gui_owned = root / "data/apps/enabled"  # gui-v2 creates it at boot; it is not ours to remove
    gui_owned.mkdir(parents=True)
    ok(install(root, shell=shell.argv, path=shell.path))
    assert (root / GUI_PLUGIN).read_bytes() == (REPO / "gui-v2/dbus-btbattery.json").read_bytes()
    assert os.readlink(root / GUI_ENABLED) == "/data/apps/available/dbus-btbattery"
    assert not list((root / GUI_PLUGIN).parent.glob("*.new"))

    ok(uninstall(root, shell=shell.argv, path=shell.path))
    assert not os.path.lexists(root / GUI_ENABLED)
    assert not (root / "data/apps/available/dbus-btbattery").exists()
    assert gui_owned.is_dir()


def test_a_folder_in_the_way_of_the_gui_link_is_refused(root: Path) -> None:
    (root / GUI_ENABLED).mkdir(parents=True)  # someone's own files: never replaced by a link
    result = install(root)
    assert result.returncode != 0 and "is not a link" in result.stderr
    assert (root / GUI_ENABLED).is_dir() and not (root / GUI_ENABLED).is_symlink()


def test_purge_removes_the_settings_and_the_log(root: Path) -> None:
    ok(install(root))
    ok(uninstall(root, "--purge"))
    assert not (root / "data/etc/dbus-btbattery").exists()
    assert not (root / "var/log/dbus-btbattery").exists()
    assert block_count(root) == 0
    assert uninstall_from_checkout(root, "--bogus").returncode != 0


def uninstall_from_checkout(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_script(REPO / "uninstallservice.sh", root, *args)


# ---- the runit service ----


def test_the_service_runs_the_installed_program(root: Path, tmp_path: Path) -> None:
    ok(install(root))
    # runit gives no arguments ("run" then); a manual --version proves the interpreter lookup and the folder.
    interpreter = tmp_path / "bin"
    interpreter.mkdir()
    (interpreter / "python3").symlink_to(sys.executable)
    env = dict(os.environ, PATH=f"{interpreter}{os.pathsep}{os.environ['PATH']}")

    result = subprocess.run(
        [str(root / APP / "service/run"), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == f"dbus-btbattery {__version__}"


def test_the_run_script_names_no_packs() -> None:
    run = (REPO / "service/run").read_text()
    assert run.splitlines()[0] == "#!/bin/sh"
    assert "exec 2>&1" in run
    assert re.search(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", run) is None
    assert "set -- run" in run


# ---- the scripts themselves ----


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_posix_sh(script: str) -> None:
    ok(subprocess.run(["sh", "-n", str(REPO / script)], capture_output=True, text=True, check=False))
    if shutil.which("shellcheck"):
        ok(
            subprocess.run(
                ["shellcheck", "-s", "sh", str(REPO / script)], capture_output=True, text=True, check=False
            )
        )


def test_the_release_build_script_is_clean_bash() -> None:
    script = str(REPO / "scripts/build-release.sh")
    ok(subprocess.run(["bash", "-n", script], capture_output=True, text=True, check=False))
    if shutil.which("shellcheck"):
        ok(subprocess.run(["shellcheck", script], capture_output=True, text=True, check=False))
