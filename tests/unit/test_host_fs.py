"""host_fs and pinned_mounts on a real filesystem: what a tenant can plant in its volumes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docker_sidecar import host_fs
from docker_sidecar.pinned_mounts import PinError, pin, unpin_below


def nest(top: Path, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def test_removal_survives_a_tree_deeper_than_python_recurses(tmp_path):
    pod = tmp_path / "pod"
    pod.mkdir()
    nest(pod, 3000)
    (pod / "link").symlink_to("/etc")
    host_fs.remove_tree(tmp_path, pod)
    assert not pod.exists() and Path("/etc/passwd").exists()


def test_removal_never_enters_a_mount(tmp_path):
    claim = tmp_path / "claim"
    claim.mkdir()
    (claim / "precious").write_text("user data")
    pod = tmp_path / "pod"
    pod.mkdir()
    pin(tmp_path, claim, pod, pod / "mounts" / "0")
    try:
        with pytest.raises(host_fs.UnsafePath, match="mounts below it"):
            host_fs.remove_tree(tmp_path, pod)
        assert (claim / "precious").read_text() == "user data"
    finally:
        assert unpin_below(pod) == []
    host_fs.remove_tree(tmp_path, pod)
    assert (claim / "precious").read_text() == "user data" and not pod.exists()


def test_a_pin_holds_what_was_opened(tmp_path):
    volume = tmp_path / "volume"
    (volume / "work").mkdir(parents=True)
    (volume / "work" / "mine").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host-file").write_text("host")
    staging = tmp_path / "staging"
    staging.mkdir()
    pin(volume, volume / "work", staging, staging / "0")
    try:
        (volume / "work").rename(volume / "old")
        (volume / "work").symlink_to(outside)
        assert os.listdir(staging / "0") == ["mine"]
        with pytest.raises(PinError, match="symlink"):  # pinning anew refuses the swap
            pin(volume, volume / "work", staging, staging / "1")
    finally:
        unpin_below(staging)


def test_a_sub_path_may_name_a_file(tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "app.ini").write_text("[main]\n")
    with pytest.raises(NotADirectoryError):
        host_fs.ensure_dir(tmp_path, volume / "app.ini", 0o755, None, None, keep_existing=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    pin(volume, volume / "app.ini", staging, staging / "0")
    try:
        assert (staging / "0").read_text() == "[main]\n"
    finally:
        unpin_below(staging)


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc"])
def test_paths_leaving_the_root_are_refused(tmp_path, rel):
    with pytest.raises(host_fs.UnsafePath):
        host_fs.ensure_dir(tmp_path, tmp_path / rel if not rel.startswith("/") else Path(rel),
                           0o755, None, None)
