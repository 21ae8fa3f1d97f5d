"""watched.aggregate on synthetic paths: prefix counts, chains collapsed, unknowns, bounds."""

from __future__ import annotations

from inotrace.watched import Prefix, aggregate


def tree(root: str, dirs: dict[str, int]) -> list[str]:
    """What a recursive watcher holds: root, each subdirectory, and n leaves below each."""
    out = [root]
    for sub, n in dirs.items():
        out.append(f"{root}/{sub}")
        out += [f"{root}/{sub}/d{i}" for i in range(n)]
    return out


def test_a_recursive_tree_counts_every_directory_under_each_prefix() -> None:
    w = aggregate(tree("/home/u/proj", {"node_modules": 100, "src": 20}), top=3)
    assert w.prefixes == (
        Prefix("/home/u/proj", 123),
        Prefix("/home/u/proj/node_modules", 101),
        Prefix("/home/u/proj/src", 21),
    )
    assert w.unknown == 0


def test_chains_above_the_watches_are_not_prefixes() -> None:
    w = aggregate(["/a/b/c/x", "/a/b/c/y"], top=10)
    assert w.prefixes == (Prefix("/a/b/c", 2), Prefix("/a/b/c/x", 1), Prefix("/a/b/c/y", 1))


def test_the_root_is_a_prefix_only_when_watched() -> None:
    assert Prefix("/", 2) not in aggregate(["/etc/x", "/home/y"]).prefixes
    assert aggregate(["/", "/etc"]).prefixes[0] == Prefix("/", 2)


def test_unknown_and_relative_paths_are_counted_not_placed() -> None:
    w = aggregate(["/x", None, None, "unknown"])
    assert (w.prefixes, w.unknown) == ((Prefix("/x", 1),), 3)


def test_one_path_watched_twice_counts_twice() -> None:
    assert aggregate(["/x", "/x"]).prefixes == (Prefix("/x", 2),)


def test_top_bounds_the_list_and_ties_go_by_path() -> None:
    w = aggregate([f"/t/{c}" for c in "dcba"], top=3)
    assert w.prefixes == (Prefix("/t", 4), Prefix("/t/a", 1), Prefix("/t/b", 1))
    assert aggregate(["/x"], top=0).prefixes == ()


def test_a_very_deep_path_does_not_recurse() -> None:
    deep = "/" + "/".join(["d"] * 5000)
    assert aggregate([deep, deep + "/e"]).prefixes[0] == Prefix(deep, 2)
