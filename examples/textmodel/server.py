"""Entry point of the example OpenAI-compatible text model server (aiohttp).

Run: python examples/textmodel/server.py --host 127.0.0.1 --port 9101 [--token-delay-ms 0] [--seed 0]
         [--cert-file server.pem --key-file server.key]   (HTTPS)
Prints "READY http://HOST:PORT" once listening (with --port 0, the port the OS chose).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
from dataclasses import dataclass

from aiohttp import web
from catalog import Catalog
from modalities import ModalApi
from openai_api import OpenAIApi, openai_errors

MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    host: str
    port: int
    token_delay_ms: float
    seed: int
    cert_file: str | None = None  # with key_file: serve HTTPS
    key_file: str | None = None


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description="Example OpenAI-compatible Markov text model.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101, help="0 picks a free port")
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="time each generated token takes")
    parser.add_argument("--seed", type=int, default=0, help="changes every generated text")
    parser.add_argument("--cert-file", help="PEM certificate chain: serve HTTPS (with --key-file)")
    parser.add_argument("--key-file", help="PEM private key of --cert-file")
    args = parser.parse_args(argv)
    if args.token_delay_ms < 0:
        parser.error("--token-delay-ms must not be negative")
    if (args.cert_file is None) != (args.key_file is None):
        parser.error("--cert-file and --key-file go together")
    return Options(args.host, args.port, args.token_delay_ms, args.seed, args.cert_file, args.key_file)


def build_app(options: Options, catalog: Catalog | None = None) -> web.Application:
    """The aiohttp application; catalog is trained from the bundled corpus when not given."""
    api = OpenAIApi(catalog or Catalog(), seed=options.seed, token_delay_s=options.token_delay_ms / 1000.0)
    app = web.Application(middlewares=[openai_errors], client_max_size=MAX_BODY_BYTES)
    app.add_routes(api.routes())
    app.add_routes(ModalApi(api.catalog, seed=options.seed).routes())
    return app


async def serve(options: Options) -> None:
    """Listen until SIGINT or SIGTERM, announcing readiness on stdout."""
    runner = web.AppRunner(build_app(options), access_log=None, handle_signals=False)
    await runner.setup()
    tls: ssl.SSLContext | None = None
    if options.cert_file is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(options.cert_file, options.key_file)
    site = web.TCPSite(runner, options.host, options.port, backlog=1024, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else options.port
    host = f"[{options.host}]" if ":" in options.host else options.host
    print(f"READY {'https' if tls else 'http'}://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    try:
        import uvloop  # optional: faster event loop when installed
    except ImportError:
        asyncio.run(serve(options))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(options))


if __name__ == "__main__":
    main()
