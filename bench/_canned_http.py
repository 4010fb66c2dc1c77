"""A trivial HTTP/1.1 server answering each path with a fixed, recorded body.

``mlflow_compare.py`` replays its ``MlflowClient`` workload against it to
measure what the client alone costs per call (the *client floor*): the server
does nothing but look the path up in a table, so the time per operation is
the client's own work plus the loopback. It keeps connections alive, as the
client expects, and listens on 127.0.0.1 only.

    python bench/_canned_http.py PORT BODIES.json

``BODIES.json`` maps ``"METHOD /path"`` (no query string) to the text of the
JSON body to answer, as recorded; any other request gets a 404 with MLflow's
error body.
"""

from __future__ import annotations

import asyncio
import json
import sys

NOT_FOUND = b'{"error_code": "ENDPOINT_NOT_FOUND", "message": "not recorded"}'


def response(status: bytes, body: bytes) -> bytes:
    """One keep-alive HTTP/1.1 response."""
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def serve(port: int, table: dict[bytes, bytes]) -> None:
    """Answer requests until killed."""
    missing = response(b"404 Not Found", NOT_FOUND)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *lines = head.split(b"\r\n")
                method, target, _ = first.split(b" ", 2)
                length = 0
                for line in lines:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                key = method + b" " + target.split(b"?", 1)[0]
                writer.write(table.get(key, missing))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        bodies = json.load(f)
    table = {key.encode(): response(b"200 OK", body.encode()) for key, body in bodies.items()}
    asyncio.run(serve(port, table))


if __name__ == "__main__":
    main()
