"""The module (layer) tree of a run, from its ModelStructure or from recorded names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ...events import ModuleInfo
from ...ui.safe import safe
from .filter_bar import matches

__all__ = ["ModuleTree", "tree_order"]


def tree_order(modules: Sequence[ModuleInfo], names: Iterable[str]) -> list[str]:
    """Every dotted name, parents first: the structure's order, then recorded names not in it."""
    seen: dict[str, None] = {}
    for m in modules:
        if m.name:
            seen[m.name] = None
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            seen.setdefault(".".join(parts[:i]), None)
    return list(seen)


class ModuleTree(Tree[str]):
    """Dotted names as a tree; each node's data is the full name. Posts :class:`Highlighted`."""

    DEFAULT_CSS = """
    ModuleTree { min-height: 5; }
    """

    class Highlighted(Message):
        """The cursor moved to a module."""

        def __init__(self, module: str) -> None:
            super().__init__()
            self.module = module

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("model", data="", id=id)
        self.border_title = "Modules"
        self.show_root = False
        self._by_name: dict[str, TreeNode[str]] = {}
        self._types: dict[str, str] = {}
        self._shown: tuple[Sequence[ModuleInfo], list[str]] = ((), [])
        self._filter = ""

    def set_filter(self, text: str) -> None:
        """Show only names containing ``text`` (case-insensitive) and their parents."""
        if text != self._filter:
            self._filter = text
            self.set_modules(*self._shown)

    def set_modules(self, modules: Sequence[ModuleInfo], names: Iterable[str]) -> None:
        """Show the modules of a structure plus every recorded name (dotted paths)."""
        names = list(names)
        self._shown = (modules, names)
        order = tree_order(modules, names)
        if self._filter:
            keep = {n for n in order if matches(n, self._filter)}
            parents = {n.rpartition(".")[0] for n in keep}
            while parents - keep - {""}:
                keep |= parents - {""}
                parents = {n.rpartition(".")[0] for n in keep}
            order = [n for n in order if n in keep]
        types = {m.name: m.type for m in modules}
        if order == list(self._by_name) and types == self._types:
            return
        current = self.cursor_node.data if self.cursor_node else None
        self.clear()
        self._by_name = {}
        self._types = types
        for name in order:
            parent_name = name.rpartition(".")[0]
            parent = self._by_name.get(parent_name, self.root)
            label = Text(safe(name.rpartition(".")[2] or name))
            if types.get(name):
                label.append(f"  {safe(types[name])}", style="dim")
            self._by_name[name] = parent.add(label, data=name, expand=True, allow_expand=True)
        for node in self._by_name.values():
            node.allow_expand = bool(node.children)
        self.root.expand()
        if current:
            self.call_after_refresh(self.select_name, current)

    def select_name(self, name: str) -> None:
        """Move the cursor to a module (no-op for an unknown name)."""
        node = self._by_name.get(name)
        if node is not None and self.cursor_node is not node:
            self.move_cursor(node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        """Turn a highlight into :class:`Highlighted`."""
        event.stop()
        if event.node.data:
            self.post_message(self.Highlighted(event.node.data))
