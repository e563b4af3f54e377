"""uv, fetched and checked: the right wheel for each platform, from an index (JSON or HTML), a
find-links page or a folder; a wrong digest, a dead server and an offline miss refused clearly."""

from __future__ import annotations

import pytest

from mus_qgis.bridge.machine import Machine, this_machine
from mus_qgis.bridge.setup_commands import SetupError
from mus_qgis.bridge.uv_tool import (
    ensure_uv,
    installed_uv,
    package_index,
    pick_wheel,
    pinned,
    uv_folder,
)
from tests.recorders import SetupProgress


@pytest.mark.parametrize(
    ("machine", "platform_tag"),
    [
        (Machine("linux", "x86_64", "glibc", (2, 36)), "manylinux_2_17_x86_64"),
        (Machine("linux", "x86_64", "musl", (1, 2)), "musllinux_1_1_x86_64"),
        (Machine("linux", "aarch64", "glibc", (2, 36)), "manylinux_2_28_aarch64"),
        (Machine("linux", "aarch64", "glibc", (2, 17)), "manylinux_2_17_aarch64"),
        (Machine("windows", "x86_64"), "win_amd64"),
        (Machine("windows", "aarch64"), "win_arm64"),
        (Machine("windows", "i686"), "win32"),
        (Machine("darwin", "aarch64"), "macosx_11_0_arm64"),
        (Machine("darwin", "x86_64"), "macosx_10_12_x86_64"),
        # An Intel build of QGIS under Rosetta: uv (and the engine) run natively on arm64.
        (Machine("darwin", "x86_64", translated=True), "macosx_11_0_arm64"),
    ],
)
def test_each_platform_gets_the_uv_wheel_built_for_it(machine, platform_tag):
    chosen = pick_wheel(machine, pinned()["wheels"])
    assert chosen, machine
    assert platform_tag in chosen[: -len(".whl")].split("-")[-1].split(".")


def test_a_platform_uv_does_not_build_for_gets_no_wheel():
    assert pick_wheel(Machine("linux", "mips64", "glibc", (2, 36)), pinned()["wheels"]) == ""
    assert pick_wheel(Machine("linux", "aarch64", "glibc", (2, 12)), pinned()["wheels"]) == ""


def test_the_index_is_the_one_named_else_the_one_uv_or_pip_is_told_to_use(monkeypatch):
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    assert package_index() == "https://pypi.org/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example.org/pypi/simple/")
    assert package_index() == "https://mirror.example.org/pypi/simple"
    assert package_index("http://127.0.0.1:9/simple") == "http://127.0.0.1:9/simple"


@pytest.mark.parametrize("index_speaks_json", [True, False])
def test_uv_comes_from_the_index_checked_and_is_fetched_once(
    tmp_path, setup_services, monkeypatch, index_speaks_json
):
    if not index_speaks_json:  # an index that only serves PEP 503 HTML (a plain mirror)
        monkeypatch.setattr("mus_qgis.bridge.uv_tool.SIMPLE_JSON", "application/x-none")
    progress = SetupProgress()
    binary = ensure_uv(tmp_path, this_machine(), progress, index=setup_services.index_url)
    assert binary == installed_uv(tmp_path, this_machine())
    assert any(path.startswith("/files/uv-") for path in setup_services.served)
    assert f"uv {pinned()['version']}: downloading" in progress.text()
    # The verified wheel stays beside the binary (an offline machine's wheel folder can take it).
    assert sorted(p.suffix for p in uv_folder(tmp_path).iterdir()) == ["", ".whl"]
    served = len(setup_services.served)
    assert ensure_uv(tmp_path, this_machine(), SetupProgress()) == binary
    assert len(setup_services.served) == served  # already there: nothing asked again


def test_uv_from_a_find_links_page_or_a_folder(tmp_path, setup_services, real_uv_wheel):
    from_page = ensure_uv(
        tmp_path / "a", this_machine(), SetupProgress(), wheel_folder=setup_services.find_links_url
    )
    assert from_page.is_file() and any(p.startswith("/find-links/") for p in setup_services.served)
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / real_uv_wheel.name).write_bytes(real_uv_wheel.read_bytes())
    setup_services.stop()  # offline: the folder alone must do
    from_folder = ensure_uv(
        tmp_path / "b", this_machine(), SetupProgress(), wheel_folder=str(folder), offline=True
    )
    assert from_folder.is_file()


def test_a_wheel_whose_digest_differs_is_refused_and_nothing_is_left(
    tmp_path, setup_services, real_uv_wheel
):
    tampered = bytearray(real_uv_wheel.read_bytes())
    tampered[-100] ^= 0xFF
    setup_services.projects["uv"].files[real_uv_wheel.name] = bytes(tampered)
    with pytest.raises(SetupError, match=r"does not match the uv release.*Nothing was installed"):
        ensure_uv(tmp_path, this_machine(), SetupProgress(), index=setup_services.index_url)
    assert not uv_folder(tmp_path).exists()
    assert [p.name for p in (tmp_path / "tools").iterdir()] == []  # no half-made staging folder


def test_a_dead_server_and_an_offline_miss_say_what_to_do(tmp_path, setup_services):
    index = setup_services.index_url
    setup_services.stop()
    with pytest.raises(SetupError) as dead:
        ensure_uv(tmp_path, this_machine(), SetupProgress(), index=index)
    message = str(dead.value)
    assert "could not download uv" in message and index in message
    assert "HTTPS_PROXY" in message and "Folder of wheels" in message
    assert "engine in use (if any) is unchanged" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SetupError, match=r"has no uv-.*offline set-up downloads nothing"):
        ensure_uv(tmp_path, this_machine(), SetupProgress(), wheel_folder=str(empty), offline=True)
    assert not uv_folder(tmp_path).exists()


def test_an_index_without_uv_is_named(tmp_path, setup_services):
    del setup_services.projects["uv"]
    with pytest.raises(SetupError, match="could not download uv"):
        ensure_uv(tmp_path, this_machine(), SetupProgress(), index=setup_services.index_url)
