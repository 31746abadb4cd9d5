"""Type stub for the optional C accelerator (``lomond/_speedups.c``)."""

def mask(key: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview, /) -> bytes: ...
def prefixed_mask(
    prefix: bytes | bytearray | memoryview,
    key: bytes | bytearray | memoryview,
    data: bytes | bytearray | memoryview,
    /,
) -> bytes: ...
