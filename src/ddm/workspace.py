"""A run folder of named, resumable artifacts: safetensors for tensors, JSON for the rest.

Layout (one sub-folder per stage)::

    <root>/config.json                 the run configuration last used
    <root>/<stage>/stage.json          {"stage", "key", "config", "complete", "seconds", ...}
    <root>/<stage>/*.safetensors       the stage's tensors

A stage is *done* when its ``stage.json`` says ``complete`` with the same ``key`` (a hash of its
configuration and of its inputs). A different key raises :class:`ConfigMismatchError` unless the
caller allows overwriting. Every write goes to a temporary file first and is moved in place with
``os.replace``, so a killed job never leaves half a file behind. Stages are computed under the workspace's
writer lock (:meth:`Workspace.lock`): a second process that would compute, discard or replace a stage waits for
the first instead of deleting the folder it is writing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ddm.exceptions import ConfigError, ConfigMismatchError, CorruptArtifactError, MissingArtifactError

log = logging.getLogger(__name__)

#: stages that only cache what other stages determine (``ddm check``'s synsets at another setting): one made from
#: inputs that have changed since (the model retrained with --overwrite) is recomputed, never an error, since the
#: command that reads them has no --overwrite and nothing of the user's is in them
RECOMPUTED_STAGES = ("check/",)

#: the writer lock's file inside a workspace (:meth:`Workspace.lock`)
LOCK_FILE = ".lock"
# this process's held locks: resolved workspace root -> (open lock file, depth), so that nested holders (fit calling
# fit again for the class-level synset) do not wait on themselves
_held: dict[Path, tuple[Any, int]] = {}


def _umask_mode() -> int:
    """0666 minus the process umask: the mode a plain ``open(..., "w")`` would give (mkstemp gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write tensors as safetensors (contiguous CPU copies; a tensor sharing memory with one written
    before it, as a model's tied weights do in its ``state_dict``, is written as a copy of its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in tensors.items():
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[k] = t.clone() if ptr in seen else t
        seen.add(ptr)
    try:
        save_file(out, tmp, metadata=metadata)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise MissingArtifactError(f"{path} does not exist; run the stage that writes it first")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
        raise CorruptArtifactError(f"{path} is damaged or not a safetensors file ({exc}); delete it or rerun the "
                                   "stage with --overwrite") from exc


def save_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def load_json(path: Path) -> Any:
    if not path.exists():
        raise MissingArtifactError(f"{path} does not exist; run the stage that writes it first")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptArtifactError(f"{path} is not valid JSON ({exc}); fix or delete it (a damaged stage is "
                                   "recomputed with --overwrite)") from exc


def cached_json(path: Path, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON result, reused from ``path`` when it was stored under the same ``key`` (a
    fingerprint of everything the result depends on); otherwise computed and stored atomically. Either
    way the caller gets the same JSON types."""
    if path.exists():
        saved = load_json(path)
        if saved.get("key") == key:
            log.info("reusing %s", path)
            return saved["result"]
    save_json(path, {"key": key, "result": compute()})
    return load_json(path)["result"]


def _differing(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [row for k in sorted(set(a) | set(b))
                for row in _differing(a.get(k, "(unset)"), b.get(k, "(unset)"), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}: {a} -> {b}"]


def _difference(stored: Any, requested: Any) -> str:
    """The fields that differ between two stage configurations, ``field: stored -> requested``."""
    rows = _differing(json.loads(json.dumps(stored, default=str)), json.loads(json.dumps(requested, default=str)))
    return ", ".join(rows) if rows else "same settings; its inputs differ (the data or an earlier stage)"


def _flock(f: Any, root: Path) -> bool:
    """Take the exclusive ``flock`` on the open lock file ``f``, waiting (and saying for whom) while another process
    holds it; False where the file system has no locks (some network mounts)."""
    import fcntl

    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except OSError as e:
        log.info("the workspace %s cannot be locked on this file system (%s): do not run two ddm processes on it at "
                 "once", root, e)
        return False
    f.seek(0)
    holder = f.read().strip() or "another process"
    log.warning("waiting for %s to finish its work in workspace %s (one process computes its stages at a time; "
                "Ctrl-C stops waiting, and nothing of this run is lost)", holder, root)
    fcntl.flock(f, fcntl.LOCK_EX)
    return True


class Workspace:
    """A folder holding one run's artifacts. Constructing it touches nothing on disk."""

    def __init__(self, root: str | os.PathLike[str], overwrite: bool = False) -> None:
        self.root = Path(root)
        self.overwrite = overwrite

    def path(self, *parts: str) -> Path:
        """``root/parts...``: confined to the workspace (no absolute parts, no ``..``, no symlinks inside)."""
        for part in parts:
            pp = Path(part)
            if pp.is_absolute() or ".." in pp.parts:
                raise ConfigError(f"{part!r} would leave the workspace {self.root}: use a plain name")
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"the workspace {self.root} is a file, not a folder: choose another -w path")
        p = self.root.joinpath(*parts)
        q = self.root
        for part in Path(*parts).parts if parts else ():
            q = q / part
            if q.is_symlink():
                raise ConfigError(f"{q} is a symbolic link inside the workspace; ddm does not follow links there "
                                  "(replace it with a real folder)")
        return p

    @contextlib.contextmanager
    def lock(self, what: str = "ddm") -> Iterator[None]:
        """Hold the workspace's writer lock while ``what`` computes, discards or replaces stages.

        An advisory ``flock`` on ``<root>/.lock``, released by the operating system when the process ends (a killed
        run leaves no stale lock). A second process waits, saying which process holds it, and then finds the
        stages the first one finished (reused, or a configuration mismatch reported as usual) instead of deleting a
        stage folder the first is still writing. Re-entrant within a process; a no-op where ``fcntl`` is missing
        (Windows)."""
        try:
            import fcntl  # noqa: F401 - POSIX only
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        self.path().mkdir(parents=True, exist_ok=True)  # path(): a workspace that is a file is an error saying so
        root = self.root.resolve()
        if root in _held:
            f, depth = _held[root]
            _held[root] = (f, depth + 1)
            try:
                yield
            finally:
                _held[root] = (f, _held[root][1] - 1)
            return
        try:
            f = open(root / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the block's whole duration
        except OSError as e:  # a read-only workspace: nothing can be computed into it, and nothing is to guard
            log.debug("no writer lock in %s (%s)", self.root, e)
            f = None
        try:
            if f is not None and not _flock(f, self.root):
                f.close()  # a file system without locks: unguarded
                f = None
            if f is None:
                yield
                return
            f.seek(0)
            f.truncate()
            f.write(f"ddm process {os.getpid()} ({what}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            f.flush()
            _held[root] = (f, 1)
            try:
                yield
            finally:
                del _held[root]
                f.seek(0)
                f.truncate()
                f.flush()
        finally:
            if f is not None:
                f.close()  # closing the file releases the lock

    def stage_info(self, stage: str) -> dict[str, Any] | None:
        p = self.path(stage, "stage.json")
        return load_json(p) if p.exists() else None

    def is_done(self, stage: str, key: str, config: Any = None) -> bool:
        """True when ``stage`` is complete with ``key``.

        Raises :class:`ConfigMismatchError` when it is complete with another key, unless the
        workspace allows overwriting (then the old stage is removed and False returned).
        A stage started with another key but never finished is discarded.
        """
        info = self.stage_info(stage)
        if info is None:
            return False
        if info.get("key") == key:
            return bool(info.get("complete"))
        if info.get("complete") and not self.overwrite and not stage.startswith(RECOMPUTED_STAGES):
            raise ConfigMismatchError(
                f"workspace {self.root} already holds stage '{stage}' computed with another configuration "
                f"({_difference(info.get('config'), config)}). "
                + ("It holds no config.json: the run that made it did not finish (killed or stopped); to resume it, "
                   "give the same options that run had (e.g. --dataset, --data-dir, --set). "
                   if not (self.root / "config.json").exists() else "")
                + "Use a new workspace folder, or pass --overwrite (overwrite=True) to recompute it."
            )
        log.info("discarding stage %s computed with another configuration", stage)
        shutil.rmtree(self.path(stage))
        return False

    def begin(self, stage: str, key: str, config: Any) -> Path:
        """Mark ``stage`` as started with ``key`` (keeps partial rows of the same key) and return its folder."""
        folder = self.path(stage)
        info = self.stage_info(stage)
        if info is not None and info.get("key") != key:
            shutil.rmtree(folder)
        if info is None or info.get("key") != key:
            save_json(folder / "stage.json", {"stage": stage, "key": key, "config": config, "complete": False})
        return folder

    def finish(self, stage: str, key: str, config: Any, **extra: Any) -> None:
        save_json(
            self.path(stage, "stage.json"),
            {"stage": stage, "key": key, "config": config, "complete": True, **extra},
        )

    def require(self, stage: str) -> dict[str, Any]:
        info = self.stage_info(stage)
        if info is None or not info.get("complete"):
            raise MissingArtifactError(
                f"stage '{stage}' is not in workspace {self.root} yet; run `ddm run -w {self.root}` "
                f"(or the `{stage.split('/')[0]}` command) first"
            )
        return info

    def stages(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.root.glob("**/stage.json")):
            out.append(load_json(p))
        return out
