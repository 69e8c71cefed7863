"""The build step pyproject.toml cannot say: generate ember_client/_gen/ (the ember.v1 messages,
by grpc_tools' protoc from proto/ember/v1/ember.proto, and the cluster service config from
deploy/grpc/service-config.json) into the built package, and carry both source files in an
sdist, which is built from python/ and so would otherwise lack them. ember_client/_build.py
does the generating (the import-time fallback uses it too); it is loaded by path here because
importing ember_client needs grpc and numpy."""
import importlib.util
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_ember_client_build", os.path.join(HERE, "ember_client", "_build.py"))
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)


def _root():
    root = _build.find_root(HERE)
    if root is None:
        raise SystemExit("ember_client: %s and %s are neither in %s nor in its parent (build from the ember "
                         "source tree's python/ or from an sdist)" % (_build.PROTO, _build.SERVICE_CONFIG, HERE))
    return root


class BuildPy(build_py):
    def run(self):
        super().run()
        out = os.path.join(self.build_lib, "ember_client", "_gen")
        if not self.dry_run:
            _build.generate(_root(), out)
            self.announce("generated %s" % out, level=2)


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        root = _root()
        for rel in (_build.PROTO, _build.SERVICE_CONFIG):
            dst = os.path.join(base_dir, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(os.path.join(root, rel), dst)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
