"""gateway/proxy/_reader.c: the wire guard's stanza reader, compiled."""

from typing import Any

def read(
    raw: bytes, stanza_type: type[Any], child_type: type[Any], max_depth: int, max_elements: int, /
) -> Any: ...
def read_text(
    stanza_type: type[Any],
    child_type: type[Any],
    max_depth: int,
    max_elements: int,
    data: str | bytes,
    max_bytes: int,
    /,
) -> Any: ...
def read_expat(
    raw: bytes, stanza_type: type[Any], child_type: type[Any], max_depth: int, max_elements: int, /
) -> Any: ...
def expat_version() -> str: ...
