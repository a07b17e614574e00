"""Reading the kit's YAML (inventories, stack files, fleet seeds, k3s flag lists, kubeconfigs): PyYAML's safe
loader, through libyaml when PyYAML has it (the same documents, several times faster: a no-op run reads four of
them before it can start), refusing a key written twice in one mapping (PyYAML keeps the last one without a word:
a second `namePrefix` silently renamed every resource)."""
import yaml

BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """Keys written twice in one mapping: every one of them, with its line and the line of its first use."""

    def __init__(self, name: str, found: list[tuple[object, yaml.Mark, yaml.Mark]]):
        super().__init__(name, found)
        self.found = sorted(found, key=lambda item: (item[1].line, item[1].column))  # in the file's order
        self.text = "; ".join(f"duplicate key '{key}' in \"{name}\", line {at.line + 1}, column {at.column + 1} "
                              f"(first at line {first.line + 1})" for key, at, first in self.found)

    def __str__(self) -> str:
        return self.text


class _NoteDuplicates:
    """Noting every duplicated key of a mapping (merge keys `<<` may still be overridden) as it is built."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[object, yaml.Mark, yaml.Mark]] = []

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE or not isinstance(key_node, yaml.ScalarNode):
                    continue  # a merge key, or a complex key SafeConstructor refuses itself
                key = self.construct_object(key_node)  # cached: the mapping's own construction reuses it
                if key in seen:
                    self.duplicates.append((key, key_node.start_mark, seen[key]))
                else:
                    seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class StrictLoader(_NoteDuplicates, BASE):
    """The fast strict loader."""


class _ExplainingLoader(_NoteDuplicates, yaml.SafeLoader):
    """The pure-Python strict loader, run again on a document libyaml refused: its marks quote the offending line
    with a caret under the spot (libyaml's marks carry no source)."""


def _named(mark, name: str):
    """The mark naming the file (libyaml's marks are read-only and name "<unicode string>")."""
    return mark and yaml.Mark(name, mark.index, mark.line, mark.column, mark.buffer, mark.pointer)


def _every(loader: StrictLoader) -> list:
    documents = []
    while loader.check_data():
        documents.append(loader.get_data())
    return documents


def _documents(text: str, name: str, every: bool, loader_class: type = StrictLoader) -> list:
    loader = loader_class(text)
    try:
        documents = _every(loader) if every else [loader.get_single_data()]
    except yaml.MarkedYAMLError as err:
        if loader_class is not _ExplainingLoader:
            return _documents(text, name, every, _ExplainingLoader)
        err.context_mark, err.problem_mark = _named(err.context_mark, name), _named(err.problem_mark, name)
        raise
    finally:
        loader.dispose()
    if loader.duplicates:
        raise DuplicateKeyError(name, loader.duplicates)
    return documents


def load(text: str, name: str = "<unicode string>"):
    """Like yaml.safe_load, refusing duplicated keys; errors are yaml.YAMLError naming `name` and the line."""
    return _documents(text, name, every=False)[0]


def load_all(text: str, name: str = "<unicode string>") -> list:
    """Every document of a multi-document stream (yaml.safe_load_all as a list), refusing duplicated keys."""
    return _documents(text, name, every=True)
