"""The pods this CLI created, remembered by ``namespace/name``.

The API has no call that lists pods, so ``status`` without a pod, and every command given a
pod's name, look it up here. The file maps ``"ns/name"`` to the pod's metadata (name, namespace,
uid) plus its container names and when it was created; ``"pending": true`` while its
``/create`` has not been answered (sent, or about to be, or its answer lost).

Every change is a read-modify-write under an advisory lock (``pods.json.lock`` next to the
file), so two commands at once never lose each other's entries; reads take no lock, since the
file is only ever replaced whole.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import USAGE, CLIFailure

ENV_PATH = "INTERLINK_CLI_STATE"
PENDING = "pending"


def default_path() -> Path:
    """``$INTERLINK_CLI_STATE``, else ``$XDG_STATE_HOME/interlink/pods.json`` (by default
    ``~/.local/state/interlink/pods.json``)."""
    if os.environ.get(ENV_PATH):
        return Path(os.environ[ENV_PATH]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "interlink" / "pods.json"


def pod_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class PodState:
    """The state file: read whole, written whole and atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CLIFailure(f"cannot read the state file {self.path}: {exc}; fix or remove "
                             f"it (set {ENV_PATH} to use another)", USAGE) from None
        if not isinstance(data, dict):
            raise CLIFailure(f"the state file {self.path} is not a JSON object; fix or "
                             "remove it", USAGE)
        return data

    def save(self, pods: dict[str, dict[str, Any]]) -> None:
        """Write to a temporary file in the same directory and rename it over the old one,
        so a reader never sees half a file; 0600 because pod names and UIDs are the
        operator's business."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".pods-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp makes it 0600
                    json.dump(pods, f, indent=1, sort_keys=True)
                    f.write("\n")
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise CLIFailure(f"cannot write the state file {self.path}: {exc}", USAGE) from None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The pods, read under the lock held until the block ends: a change made by another
        command in between would otherwise be overwritten."""
        fd = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise CLIFailure(f"cannot lock the state file with {self.lock_path}: {exc}",
                             USAGE) from None
        try:
            yield self.load()
        finally:
            os.close(fd)  # releases the lock

    def remember(self, entry: dict[str, Any]) -> None:
        with self._locked() as pods:
            pods[pod_key(entry["namespace"], entry["name"])] = entry
            self.save(pods)

    def claim(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Remember ``entry`` unless its name is taken; the entry holding the name if it is.
        One check and write under the lock, so two creates of one name cannot both win."""
        key = pod_key(entry["namespace"], entry["name"])
        with self._locked() as pods:
            if key in pods:
                return pods[key]
            pods[key] = entry
            self.save(pods)
        return None

    def settle(self, key: str, uid: str) -> None:
        """The API has the pod: drop its pending mark. An entry forgotten meanwhile (a
        ``delete`` ran), or since holding another uid, is left as it is."""
        with self._locked() as pods:
            entry = pods.get(key)
            if entry is not None and entry.get("uid") == uid and PENDING in entry:
                del entry[PENDING]
                self.save(pods)

    def forget(self, key: str, uid: str | None = None) -> None:
        """Drop the entry (only if it still has ``uid``, when given)."""
        with self._locked() as pods:
            entry = pods.get(key)
            if entry is not None and (uid is None or entry.get("uid") == uid):
                del pods[key]
                self.save(pods)

    def find(self, ref: str, namespace: str) -> dict[str, Any]:
        """The entry for ``name`` (in ``namespace``) or ``ns/name``; a clear failure when this
        CLI never created it."""
        key = ref if "/" in ref else pod_key(namespace, ref)
        entry = self.load().get(key)
        if entry is None:
            raise CLIFailure(f"pod {key} is not known: it was not created with 'interlink "
                             f"create' (state file {self.path}) or has been deleted; "
                             "'interlink status' lists the known pods")
        return entry


def as_pod(entry: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API's status, logs and delete calls take it: its metadata is enough."""
    return {"metadata": {"name": entry["name"], "namespace": entry["namespace"],
                         "uid": entry["uid"]},
            "spec": {"containers": [{"name": n} for n in entry.get("containers", [])]}}
