"""The generated ember.v1 messages (`pb`) and the cluster service config, wherever they are.

A built package (wheel, sdist, pip install) has them in ember_client/_gen/, written by
setup.py. Imported from the ember source tree (PYTHONPATH=python), the package has no _gen/;
then they are generated from ../proto and ../deploy/grpc (relative to python/) into a cache
directory, once per content of ember.proto and the service config:
$EMBER_CLIENT_CACHE, else $XDG_CACHE_HOME/ember_client, else ~/.cache/ember_client, in a
subdirectory named by a hash of both files. Where that cannot be written, a fresh temporary
directory is used and removed once loaded (generation happens on every import).
"""
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile

from . import _build

_HERE = os.path.dirname(os.path.abspath(__file__))


def _cache_base():
    base = os.environ.get("EMBER_CLIENT_CACHE")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "ember_client")


def _complete(d):
    return all(os.path.isfile(os.path.join(d, f)) for f in _build.GEN_FILES)


def _generate_into_cache(root):
    h = hashlib.sha256()
    for rel in (_build.PROTO, _build.SERVICE_CONFIG):
        with open(os.path.join(root, rel), "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    import google.protobuf
    h.update(google.protobuf.__version__.encode())  # the generated code suits this runtime
    final = os.path.join(_cache_base(), "gen-" + h.hexdigest()[:20])
    if _complete(final):
        return final, False
    try:
        os.makedirs(_cache_base(), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".gen-", dir=_cache_base())
    except OSError:
        tmp = None
    if tmp is None:  # no writable cache: generate for this process only (removed once loaded)
        tmp = tempfile.mkdtemp(prefix="ember_client-gen-")
        _build.generate(root, tmp)
        return tmp, True
    try:
        _build.generate(root, tmp)
        os.rename(tmp, final)  # atomic; fails if another process got there first
    except OSError:
        if not _complete(final):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, False


def _load():
    gen = os.path.join(_HERE, "_gen")
    if _complete(gen):
        from ._gen import ember_pb2
        return ember_pb2, _read_config(os.path.join(gen, "service_config.json"))
    root = _build.find_root(os.path.dirname(_HERE))
    if root is None:
        raise ImportError(
            "ember_client: no generated stubs (%s) and no ember source tree around it to generate "
            "them from (proto/ember/v1/ember.proto): install the built package (docs/client-python.md) "
            "or import it from the ember source tree" % gen)
    try:
        d, temporary = _generate_into_cache(root)
    except ImportError as e:
        raise ImportError("ember_client: generating its stubs from %s needs grpc_tools (Debian: "
                          "python3-grpc-tools): %s" % (os.path.join(root, _build.PROTO), e)) from e
    spec = importlib.util.spec_from_file_location("ember_client._cached_ember_pb2", os.path.join(d, "ember_pb2.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    config = _read_config(os.path.join(d, "service_config.json"))
    if temporary:
        shutil.rmtree(d, ignore_errors=True)
    return mod, config


def _read_config(path):
    """The service config as one line of JSON (the channel option's value)."""
    with open(path) as f:
        return json.dumps(json.load(f), separators=(",", ":"))


pb, _service_config = _load()


def service_config():
    """deploy/grpc/service-config.json, as _gen/ or the cache holds it, in one line of JSON."""
    return _service_config
