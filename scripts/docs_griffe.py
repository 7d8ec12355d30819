"""A griffe extension for the API reference: a stub (`_native.pyi`) declares
a function it overloads only as its `@overload` variants, with no
implementation after them, and griffe keeps a function only when an
implementation follows. Keep the last variant as the function, with the
others as its overloads, so `execute_query` and `iter_query` are listed."""

from __future__ import annotations

from typing import Any

import griffe


class StubOverloads(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        self._keep(cls)

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        self._keep(mod)

    @staticmethod
    def _keep(parent: griffe.Class | griffe.Module) -> None:
        for name, variants in list(parent.overloads.items()):
            if variants and name not in parent.members:
                function = variants[-1]
                function.overloads = variants[:-1]
                parent.set_member(name, function)
                del parent.overloads[name]
