"""A loaded bundle kept on disk per user, so a command does not parse its YAML and CEL again (issue 6).

Loading the default bundle parses six YAML files with positions and 26 CEL expressions: most of
the 100–170 ms a command spends before its first decision. :func:`load_bundle_cached` keeps the
loaded :class:`~engine.bundle.Bundle` in the cache directory of the CEL parser tables
(``$EP4_CACHE_DIR``, else ``$XDG_CACHE_HOME/ep4``, else ``~/.cache/ep4``, created 0700). A gate is
kept as its checked tree and its plan (the compiled code, its constants, the tree nodes its errors
name; helpers bound again by name): loading runs no YAML parser, no CEL parser and no planner. The
tree and the nodes stay pickled bytes until the reference path or the interpreter first needs them
(``engine.cel._Deferred``): most decisions need neither, and they are most of an entry.
``ep4 check`` always loads from the files.

An entry is used only when all of these are what they were when it was written, else the bundle
is loaded from its files as usual (and the entry replaced):

* the bundle path as given, and the bytes of the bundle file;
* every included gate library: the path it resolves to and the sha256 of its bytes;
* ep4's own source (every ``engine/**/*.py``), cel-python's source and grammar and ruamel.yaml's
  source, each by path, size and modification time (CPython's rule for a stale .pyc), the Python
  version and the versions of lark and pydantic.

A bundle with problems is never cached (the error comes from the loader, every time). Nothing here
is needed for correctness: any problem reading or writing an entry means a normal load.
``EP4_BUNDLE_CACHE=0`` turns the cache off. The cache keeps the 32 most recent entries.

The trust boundary is the user's own: an entry is a pickle, and reading one runs what its writer put
there, so a cache directory or an entry file that is not this user's, or that group or others can
write (a shared ``/tmp`` path in ``$EP4_CACHE_DIR``, a group-writable CI cache), is neither read nor
written: the bundle is loaded from its files (engine.cel.grammar.trusted_cache_dir). Whoever can write
a directory that is only this user's can also change ep4's code. Every load still reads and hashes the bundle
file and each include (that is how an entry is checked), so ``Bundle.sources``, which certification
compares with the certificate, always describes the files as they are now.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

from .bundle import MAX_FILE_BYTES, Bundle, load_bundle

__all__ = ["load_bundle_cached"]

_KEEP = 32
_FORMAT = "ep4-bundle-cache-2"
_FINGERPRINT: list[str] = []
# the libraries a loaded bundle's objects come from, and where each keeps its version (all imported
# by engine.bundle before this module runs); ruamel.yaml, which reads the files, is imported only
# when they are read (engine.bundle_yaml), so its source is fingerprinted by file like cel-python's
_LIBRARIES = (("lark", "__version__"), ("pydantic", "VERSION"), ("pydantic_core", "__version__"))


def _fingerprint() -> str:
    """ep4's code and the libraries that shape a loaded bundle (computed once per process)."""
    if not _FINGERPRINT:
        h = hashlib.sha256(_FORMAT.encode())
        # each source file by path, size and modification time: the rule CPython uses to decide
        # that a .pyc is stale (an edit, a checkout or a reinstall changes them)
        files: list[tuple[str, int, int]] = []
        sources = [(os.path.dirname(os.path.abspath(__file__)), True),
                   (os.path.dirname(sys.modules["celpy"].__file__), False)]  # cel-python keeps no __version__
        ruamel = importlib.util.find_spec("ruamel.yaml")  # located, not imported
        if ruamel is not None and ruamel.origin:
            sources.append((os.path.dirname(ruamel.origin), False))
        for directory, recurse in sources:
            for top, dirs, names in os.walk(directory):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__") if recurse else []
                for name in names:
                    if name.endswith((".py", ".lark")):
                        st = os.stat(os.path.join(top, name))
                        files.append((os.path.join(top, name), st.st_size, st.st_mtime_ns))
        h.update("".join(f"{p}\0{size}\0{mtime}\n" for p, size, mtime in sorted(files)).encode())
        versions = [f"{name}={getattr(sys.modules.get(name), attr, '?')}" for name, attr in _LIBRARIES]
        h.update("\n".join([sys.version, *versions]).encode())
        _FINGERPRINT.append(h.hexdigest())
    return _FINGERPRINT[0]


def _includes(bundle_path: Path, bundle: Bundle) -> list[tuple[str, str]]:
    """(resolved path, sha256 of the bytes) of every included library, now."""
    out = []
    for name, _digest in bundle.sources[1:]:
        lib = (bundle_path.parent / name).resolve()
        if lib.stat().st_size > MAX_FILE_BYTES:  # no longer a gate library: the loader says so
            raise ValueError(f"{lib} is larger than a gate library may be")
        out.append((str(lib), "sha256:" + hashlib.sha256(lib.read_bytes()).hexdigest()))
    return out


def load_bundle_cached(path: str | Path) -> Bundle:
    """:func:`engine.bundle.load_bundle`, from the cache when the entry is still exact."""
    if os.environ.get("EP4_BUNDLE_CACHE", "1") == "0":
        return load_bundle(path)
    from .cel.grammar import trusted_cache_dir, trusted_file

    bundle_path = Path(path)
    try:
        if not bundle_path.is_file() or bundle_path.stat().st_size > MAX_FILE_BYTES:
            return load_bundle(path)  # the loader's own message
        directory = trusted_cache_dir()
        if directory is None:  # no cache directory this user alone can write: no cache
            return load_bundle(path)
        data = bundle_path.read_bytes()
        key = hashlib.sha256("\n".join([_fingerprint(), str(path), str(bundle_path.resolve())]).encode() + b"\n" + data).hexdigest()[:40]
        entry = directory / f"bundle-{key}.pickle"
    except Exception:  # unreadable file (the loader says why), no home directory to cache in, ...
        return load_bundle(path)
    try:
        with open(entry, "rb") as f:
            if not trusted_file(f):  # written by another user (or writable by one): not read, replaced
                raise PermissionError(entry)
            stored = pickle.load(f)
        bundle = stored["bundle"]
        if (isinstance(bundle, Bundle) and bundle.sources[0][1] == "sha256:" + hashlib.sha256(data).hexdigest()
                and stored["includes"] == _includes(bundle_path, bundle) and bundle.path == str(path)):
            return bundle
    except Exception:  # missing, unreadable, stale, another ep4: load it (and try to save it)
        pass
    bundle = load_bundle(path)
    _save(entry, bundle_path, bundle)
    return bundle


def _save(entry: Path, bundle_path: Path, bundle: Bundle) -> None:
    try:
        # the digests the loader computed from the bytes it compiled (not a second read, which could
        # see a file changed since); a later load re-hashes the files and compares with these
        stored: dict[str, Any] = {"bundle": bundle, "includes": [
            (str((bundle_path.parent / name).resolve()), digest) for name, digest in bundle.sources[1:]]}
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".bundle-")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(stored, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, entry)
        except BaseException:
            os.unlink(tmp)
            raise
        entries = sorted(entry.parent.glob("bundle-*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in entries[_KEEP:]:
            old.unlink(missing_ok=True)
    except Exception:  # a cache that cannot be written is no cache
        pass
