"""CPU stand-ins for ``flash_attn`` and ``triton``: the one place the tests replace anything of nanotron's.

``import nanotron.config`` reaches ``nanotron/nn/ring_attention.py``, which imports ``flash_attn`` and
``triton`` at module level; neither installs without CUDA. Loading configs, building datasets and
reading checkpoint metadata calls none of their kernels, so on a CPU machine these imports resolve
to inert modules whose attributes are placeholders (decorators and ``triton.Config(...)`` at module
level work). A placeholder called with a tensor raises: no kernel runs silently on a stand-in.

Used by putting this folder on PYTHONPATH of the train env's python (tests/cluster_env.py does);
Python imports ``sitecustomize`` at start-up. Where the real package is installed (a GPU node), it
is used and nothing here is active.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

STANDIN_PACKAGES = ("flash_attn", "triton")


class StandIn:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return StandIn(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        for a in list(args) + list(kwargs.values()):
            if type(a).__module__.startswith("torch"):
                raise RuntimeError(f"{self._name} is a CPU stand-in (tests/nanotron_stubs): "
                                   "its CUDA kernel cannot run here")
        if len(args) == 1 and not kwargs and callable(args[0]):
            return StandIn(f"{self._name}({getattr(args[0], '__name__', '?')})")  # a decorator
        return StandIn(f"{self._name}(...)")

    def __getitem__(self, key):  # triton's kernel[grid]
        return StandIn(f"{self._name}[...]")

    def __repr__(self):
        return f"<CPU stand-in {self._name}>"


class _StandInModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return StandIn(f"{self.__name__}.{attr}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, packages):
        self.packages = tuple(packages)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in self.packages:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        module.__version__ = "0.0.0+cpu-stand-in"
        return module

    def exec_module(self, module):
        pass


def _install():
    missing = [name for name in STANDIN_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        sys.meta_path.append(_Finder(missing))


_install()
