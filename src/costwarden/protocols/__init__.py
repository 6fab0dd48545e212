"""Sans-I/O protocol codecs: bytes and dicts in, values out. No sockets, no asyncio."""
