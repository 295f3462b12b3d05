#!/usr/bin/env python3
"""A real OCI client for shoal's end-to-end tests: oras-py (`pip install oras`, 0.2.x).

    oras_client.py push --registry HOST:PORT --target REPO:TAG FILE...
    oras_client.py pull --registry HOST:PORT --target REPO:TAG --outdir DIR

Plain HTTP only (the registries under test listen on loopback). Prints one JSON object
on the last line of stdout:

    push: {"ok": true, "status": 201, "digest": "sha256:...", "requests": [...]}
    pull: {"ok": true, "files": ["/abs/path", ...], "requests": [...]}
    either, on failure: {"ok": false, "error": "...", "requests": [...]}

`requests` lists every HTTP exchange as {"method", "url", "status"}, so a test can see
what the client really did. oras retries failed requests for minutes (3 s, 5 s, 11 s,
...); that is switched off here so that an error surfaces at once instead of being hidden
by a retry that happens to work.
"""

import argparse
import json
import os
import sys

try:
    import oras.client
    import oras.provider
except ImportError as e:  # the Rust test checks this first; keep the message clear anyway
    print(json.dumps({"ok": False, "error": f"cannot import oras ({e}); pip install oras"}))
    sys.exit(3)

# `do_request` is wrapped by `oras.decorator.retry` (functools.wraps keeps the original).
_do_request = getattr(oras.provider.Registry.do_request, "__wrapped__", None)
if _do_request is not None:
    oras.provider.Registry.do_request = _do_request


def client(registry, log):
    c = oras.client.OrasClient(hostname=registry, insecure=True)

    def record(resp, *args, **kwargs):
        log.append(
            {
                "method": resp.request.method,
                "url": resp.request.url,
                "status": resp.status_code,
            }
        )

    c.session.hooks["response"].append(record)
    return c


def push(args, log):
    c = client(args.registry, log)
    files = [os.path.abspath(f) for f in args.files]
    resp = c.push(
        target=f"{args.registry}/{args.target}",
        files=files,
        disable_path_validation=True,
    )
    return {
        "ok": True,
        "status": resp.status_code,
        "digest": resp.headers.get("Docker-Content-Digest"),
    }


def pull(args, log):
    c = client(args.registry, log)
    os.makedirs(args.outdir, exist_ok=True)
    files = c.pull(target=f"{args.registry}/{args.target}", outdir=args.outdir)
    return {"ok": True, "files": [os.path.abspath(f) for f in files]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("push", help="push files as one artifact, one layer per file")
    ps.add_argument("--registry", required=True, help="HOST:PORT, plain HTTP")
    ps.add_argument("--target", required=True, help="REPO:TAG")
    ps.add_argument("files", nargs="+")
    pl = sub.add_parser("pull", help="pull an artifact's layers into a directory")
    pl.add_argument("--registry", required=True, help="HOST:PORT, plain HTTP")
    pl.add_argument("--target", required=True, help="REPO:TAG")
    pl.add_argument("--outdir", required=True)
    args = p.parse_args()

    log = []
    try:
        out = push(args, log) if args.cmd == "push" else pull(args, log)
    except Exception as e:  # report any failure as JSON, with the exchanges so far
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out["requests"] = log
    print(json.dumps(out))
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
