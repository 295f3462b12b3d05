#!/usr/bin/env python3
"""Writes a small but real multi-platform container image as an OCI image layout.

    oci_image.py --out DIR --tag TAG --label TEXT

The image is an OCI image index with a linux/amd64 and a linux/arm64 manifest. Each has
two gzip'd tar layers: one both platforms share (the same blob) and one of its own, and a
config whose rootfs.diff_ids are the sha256 of the uncompressed tars, so that Docker and
containerd can unpack it. TEXT goes into the files, so that each test run makes blobs no
other run made (a client's local store never already holds them). Python's standard
library only; the output is deterministic for a given TEXT.

Prints one JSON object on stdout:

    {"index": {"digest", "size"},
     "manifests": {"amd64": {"digest", "size", "diff_ids"}, "arm64": {...}},
     "blobs": {"sha256:...": {"size", "kind", "platform"}, ...}}

where `blobs` lists the configs and layers (not the manifests), `kind` is "config" or
"layer" and `platform` is "amd64", "arm64" or "shared".
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# A fixed time, so that the same TEXT gives the same bytes.
MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files):
    """An uncompressed tar of {path: bytes}, with its directories, owned by root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        dirs = set()
        for path in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = MTIME
            t.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = MTIME
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_of(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        g.write(data)
    return buf.getvalue()


class Layout:
    def __init__(self, root):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blob_dir, exist_ok=True)

    def put(self, data):
        digest = sha256(data)
        with open(os.path.join(self.blob_dir, digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
        return {"digest": digest, "size": len(data)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the OCI layout directory to write")
    p.add_argument("--tag", required=True, help="the index's ref name in the layout")
    p.add_argument("--label", required=True, help="text that makes this run's blobs unique")
    args = p.parse_args()

    lay = Layout(args.out)
    blobs = {}

    shared_tar = tar_of(
        {
            "etc/shoal-e2e/label": (args.label + "\n").encode(),
            "usr/share/shoal-e2e/README": b"A test image for shoal's end-to-end test.\n"
            + b"shared layer " * 200
            + b"\n",
        }
    )
    shared = lay.put(gzip_of(shared_tar))
    blobs[shared["digest"]] = {"size": shared["size"], "kind": "layer", "platform": "shared"}

    manifests = {}
    index_entries = []
    for arch in ("amd64", "arm64"):
        own_tar = tar_of(
            {
                "etc/shoal-e2e/arch": f"{arch}\n".encode(),
                "hello.txt": f"hello from linux/{arch} ({args.label})\n".encode() * 50,
            }
        )
        own = lay.put(gzip_of(own_tar))
        blobs[own["digest"]] = {"size": own["size"], "kind": "layer", "platform": arch}
        config = {
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/true"],
                "Labels": {"org.opencontainers.image.description": args.label},
            },
            "rootfs": {"type": "layers", "diff_ids": [sha256(shared_tar), sha256(own_tar)]},
            "history": [
                {"created": CREATED, "created_by": "shoal e2e: shared layer"},
                {"created": CREATED, "created_by": f"shoal e2e: {arch} layer"},
            ],
        }
        cfg = lay.put(json.dumps(config, sort_keys=True).encode())
        blobs[cfg["digest"]] = {"size": cfg["size"], "kind": "config", "platform": arch}
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **cfg},
            "layers": [{"mediaType": OCI_LAYER, **shared}, {"mediaType": OCI_LAYER, **own}],
        }
        m = lay.put(json.dumps(manifest, sort_keys=True).encode())
        manifests[arch] = {**m, "diff_ids": config["rootfs"]["diff_ids"]}
        index_entries.append(
            {"mediaType": OCI_MANIFEST, **m, "platform": {"architecture": arch, "os": "linux"}}
        )

    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}
    idx = lay.put(json.dumps(index, sort_keys=True).encode())

    # The layout's own files: the top index names the image index by its tag.
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_INDEX,
                **idx,
                "annotations": {"org.opencontainers.image.ref.name": args.tag},
            }
        ],
    }
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(top, f)
    with open(os.path.join(args.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    json.dump({"index": idx, "manifests": manifests, "blobs": blobs}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
