#!/usr/bin/env python3
"""Writes an OCI image-layout archive from files on this machine, with no registry
and no container engine, for `ctr images import` on the e2e cluster's real nodes.

One gzip layer, made deterministic (sorted entries, mtime 0, owner root), so the
same inputs always give the same digest and a node never holds two copies of an
unchanged image.

  oci_image.py --name localhost/app:1 --out app.oci.tar --user 65532:65532 \
      --entrypoint /usr/local/bin/app --file SRC:DEST:MODE [--dir DEST:MODE] [--label K=V]
"""

import argparse
import gzip
import hashlib
import io
import json
import platform
import sys
import tarfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def add(tar, name, data=None, mode=0o755, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def layer(files, dirs):
    """The uncompressed layer tar: every parent directory, then the entries, sorted."""
    entries = {}
    for src, dest, mode in files:
        with open(src, "rb") as f:
            entries[dest.lstrip("/")] = (f.read(), mode)
    for dest, mode in dirs:
        entries[dest.lstrip("/")] = (None, mode)
    parents = set()
    for name in entries:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parents.add("/".join(parts[:i]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(parents | set(entries)):
            data, mode = entries.get(name, (None, 0o755))
            if data is None:
                add(tar, name, mode=mode, kind=tarfile.DIRTYPE)
            else:
                add(tar, name, data=data, mode=mode)
    return buf.getvalue()


def blob(tar, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    add(tar, "blobs/sha256/" + digest.split(":")[1], data=data, mode=0o644)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="full reference, such as localhost/app:1")
    p.add_argument("--out", required=True)
    p.add_argument("--user", default="65532:65532")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--file", action="append", default=[], help="SRC:DEST:MODE (octal)")
    p.add_argument("--dir", action="append", default=[], help="DEST:MODE (octal)")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    a = p.parse_args()

    files = []
    for spec in a.file:
        src, dest, mode = spec.rsplit(":", 2)
        files.append((src, dest, int(mode, 8)))
    dirs = [(d.rsplit(":", 1)[0], int(d.rsplit(":", 1)[1], 8)) for d in a.dir]
    raw = layer(files, dirs)
    # mtime 0 and no file name in the gzip header: the same bytes every time.
    compressed = gzip.compress(raw, compresslevel=6, mtime=0)
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "blobs", kind=tarfile.DIRTYPE)
        add(tar, "blobs/sha256", kind=tarfile.DIRTYPE)
        layer_desc = blob(tar, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
        config = {
            "architecture": ARCH.get(platform.machine(), platform.machine()),
            "os": "linux",
            "config": {
                "User": a.user,
                "Entrypoint": a.entrypoint,
                "Env": ["PATH=/usr/local/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
                "Labels": dict(label.split("=", 1) for label in a.label),
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
            "history": [{"created_by": "e2e/lib/oci_image.py"}],
        }
        config_desc = blob(
            tar, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = blob(
            tar, json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json"
        )
        manifest_desc["annotations"] = {
            "io.containerd.image.name": a.name,
            "org.opencontainers.image.ref.name": tag,
        }
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
        add(tar, "index.json", data=json.dumps(index, sort_keys=True).encode(), mode=0o644)
        add(tar, "oci-layout", data=b'{"imageLayoutVersion":"1.0.0"}', mode=0o644)
    with open(a.out, "wb") as f:
        f.write(out.getvalue())
    print(f"{a.name} {manifest_desc['digest']} {len(out.getvalue())} bytes")


if __name__ == "__main__":
    sys.exit(main())
