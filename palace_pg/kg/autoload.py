"""Bootstrap run from the ``.pth`` line at interpreter start: cheap, and inert unless mempalace loads.

It registers a ``sys.meta_path`` finder that, once one of mempalace's KG-related
modules has executed, applies :mod:`palace_pg.kg.hook`'s patch to it when the
AGE graph is selected.  Nothing else is imported until then, and a failure
here never stops the interpreter (it is logged and mempalace stays on sqlite).
"""

from __future__ import annotations

import sys

_WATCHED = ("mempalace.knowledge_graph", "mempalace.kg_normalize", "mempalace.palace_audit")


class _PatchAfterExec:
    """Wraps a module loader: run the real exec_module, then patch the module."""

    def __init__(self, loader, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        try:
            from . import hook

            if hook.selected_backend() in hook.PALACE_PG:
                hook.PATCHES[self._name](module)
        except Exception:  # never break mempalace's import; it keeps its sqlite graph
            import logging

            logging.getLogger(__name__).exception("palace_pg: could not switch %s to AGE", self._name)

    def __getattr__(self, item):  # get_source, is_package, … for tools that ask the loader
        return getattr(self._loader, item)


class KgFinder:
    # Duck-typed (no importlib.abc import: this module runs at every interpreter start).
    def find_spec(self, fullname, path, target=None):
        if fullname not in _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchAfterExec(spec.loader, fullname)
                return spec
        return None


def register() -> None:
    if not any(isinstance(f, KgFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, KgFinder())
    # Already imported (e.g. the hook was enabled late): patch now.
    if any(name in sys.modules for name in _WATCHED):
        from . import hook

        if hook.selected_backend() in hook.PALACE_PG:
            for name in _WATCHED:
                if name in sys.modules:
                    hook.PATCHES[name](sys.modules[name])


register()
