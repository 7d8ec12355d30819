"""A byte relay, run as its own process: `python relay.py LISTEN TARGET`,
each a `host:port` or `unix:/path`. Prints `ready` once it listens; every
accepted link is piped both ways to TARGET until either end closes.

netpath.py runs one inside a network namespace (where only a veth pair
reaches it) and one on the host (from a Unix socket to the real server)."""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[5:])
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def main(listen: str, target: str) -> None:
    async def link(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await _open(target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    if listen.startswith("unix:"):
        server = await asyncio.start_unix_server(link, listen[5:])
    else:
        host, _, port = listen.rpartition(":")
        server = await asyncio.start_server(link, host, int(port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
