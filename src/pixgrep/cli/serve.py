"""`pixgrep serve`: the web page and HTTP API on uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal

from pixgrep.errors import PixgrepError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def register(subparsers) -> None:
    from pixgrep.cli.options import add_common_options

    parser = subparsers.add_parser(
        "serve",
        help="serve the catalog on a web page and an HTTP API",
        description="Serve the catalog: a web page to search it (text, dropped images, the refine loop), "
        "pixgrep's HTTP API (OpenAPI page at /docs) and a clip-retrieval compatible /knn-service.",
        epilog="examples:\n"
        "  pixgrep serve                                   http://127.0.0.1:8000/\n"
        "  pixgrep serve --port 9000 --model pixgrep-mini\n"
        "  PIXGREP_TOKEN=s3cret pixgrep serve --host 0.0.0.0  others open http://HOST:8000/?token=s3cret\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    add_common_options(parser)
    parser.add_argument(
        "--token",
        default=os.environ.get("PIXGREP_TOKEN"),
        help="access token every request must carry (default: $PIXGREP_TOKEN); required when --host is "
        "not a loopback address",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from this origin call the API from a browser (repeatable; e.g. a hosted "
        "clip-retrieval front end). Off by default.",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to this host name (repeatable; e.g. photos.lan). Only the "
        "--host address, localhost, 127.0.0.1 and ::1 are answered otherwise (with --host 0.0.0.0 "
        "or ::, any IP address too): a web site cannot rebind its own name to this server",
    )
    parser.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let searches fetch image URLs on loopback, private and link-local addresses (a photo "
        "server on a LAN). Off by default: clients could otherwise reach this machine's and this "
        "network's private services through the server",
    )
    parser.add_argument(
        "--max-pixels",
        type=_megapixels,
        default=None,
        metavar="MPX",
        help="largest uploaded or fetched query image, in megapixels, read from its header before "
        "decoding (default: 64; at most 256)",
    )
    parser.set_defaults(func=run)


def _megapixels(text: str) -> int:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 256):
        raise argparse.ArgumentTypeError(
            f"must be a number of megapixels above 0 and at most 256 (not {text!r})"
        )
    return int(value * 1_000_000)


# A token travels in a header, a URL and a cookie: printable ASCII without what those would split.
_TOKEN_BAD = set(' ;,"\\')


def check_token(token: str) -> None:
    if not token.isascii() or not token.isprintable() or _TOKEN_BAD & set(token):
        raise PixgrepError(
            "the token (--token or PIXGREP_TOKEN) must be printable ASCII without spaces, ';', ',', "
            "'\"' or '\\'"
        )


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise PixgrepError(f"--port must be between 1 and 65535, not {args.port}")
    if args.token:
        check_token(args.token)
    from pixgrep.search.fetch import url_timeout

    url_timeout()  # a bad $PIXGREP_URL_TIMEOUT stops the start, not each search
    if not is_loopback(args.host) and not args.token:
        raise PixgrepError(
            f"serving on {args.host} lets other machines in: set --token or $PIXGREP_TOKEN "
            "(or serve on 127.0.0.1)"
        )
    try:
        import uvicorn

        from pixgrep.server.app import create_app
    except ImportError as exc:
        hint = f"pip install 'pixgrep[serve]' ({exc.name} is missing)"
        raise PixgrepError(f"the server needs its extra: {hint}") from None

    _check_port_free(args.host, args.port)
    from pixgrep.server.state import MAX_UPLOAD_PIXELS

    app = create_app(
        args.catalog,
        model=args.model,
        token=args.token,
        cors_origins=args.cors_origin,
        bind_host=args.host,
        allowed_hosts=args.allowed_host,
        allow_private_urls=args.allow_private_urls,
        max_pixels=args.max_pixels or MAX_UPLOAD_PIXELS,
    )
    from pixgrep.server.state import warm_up

    warm_up(app.state.pixgrep)
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    print(f"pixgrep: serving {app.state.pixgrep.catalog.path} at {where}", flush=True)
    if args.token:
        print("pixgrep: requests must carry the token (Authorization: Bearer, or ?token=)", flush=True)
    from pixgrep.server.handoff import InstanceHeader, announced, read_note

    state = app.state.pixgrep
    with announced(
        state.catalog.path,
        host=args.host,
        port=args.port,
        model=args.model,
        model_id=str(state.catalog.encoder.model_id),
        token=bool(args.token),
    ) as key:  # `pixgrep -n` hands its text queries here while this runs (server/handoff.py)
        app.add_middleware(InstanceHeader, key=key)
        other = read_note(state.catalog.path)
        if other and other.get("key") != key:
            print(
                f"pixgrep: the server already running on this catalog (pid {other.get('pid')}) keeps "
                "answering `pixgrep -n`",
                flush=True,
            )
        # uvicorn shuts down gracefully on SIGTERM, then raises it again under the handler it found:
        # an exit, not the default kill, so that the note above is removed on the way out.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        finally:  # SIGTERM or Ctrl-C: an index run ends after its next commit, before the exit
            state.runner.stop()
    return 0


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)  # the stop a service manager asks for, done gracefully


def _check_port_free(host: str, port: int) -> None:
    """uvicorn exits with a log line when it cannot bind; say it in pixgrep's one-line way first."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PixgrepError(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise PixgrepError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
