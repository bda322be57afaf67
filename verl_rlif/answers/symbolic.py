"""Placeholder replaced below once the safety study is in."""


def symbolic_key(normalized: str) -> str | None:
    return None
