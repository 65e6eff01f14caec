"""Loading a dataset's images through its Croissant metadata (``croissant:FILE``).

The metadata's ``distribution`` FileObjects are downloaded (once, into the cache) and checked against
their sha256; IDX files and zip/tar archives of class folders are then read with the usual loaders.
Offline, or for a distribution kgraft cannot read (e.g. parquet shards), the loader stops with one
sentence that says what to do instead. The metadata itself imports with ``kgraft import croissant``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import urllib.request
from pathlib import Path

from transfer.data.base import DataError

CACHE = Path.home() / ".cache" / "kgraft" / "croissant"
TIMEOUT_S = 20


def _download(url: str, dest: Path, sha256: str | None) -> Path:
    if dest.is_file() and (not sha256 or hashlib.sha256(dest.read_bytes()).hexdigest() == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, tmp.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"cannot download {url} ({getattr(exc, 'reason', exc)}); fetch it yourself into {dest.parent} "
            "and register that folder with `kgraft dataset add imagefolder:DIR` or `idx:DIR`."
        ) from None
    if sha256 and hashlib.sha256(tmp.read_bytes()).hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{url} does not match the sha256 its Croissant metadata gives.")
    tmp.replace(dest)
    return dest


def fetch_croissant(path: str | Path) -> str:
    """Download the image files a Croissant file describes; the ``load_dataset`` spec that reads them
    (``idx:DIR`` or ``imagefolder:DIR``)."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a readable Croissant JSON-LD file ({exc}).") from None
    name = re.sub(r"[^a-z0-9._-]+", "-", str(meta.get("name", path.stem)).lower())
    folder = CACHE / name
    files = [d for d in meta.get("distribution", []) if "FileObject" in str(d.get("@type"))]
    downloadable = [d for d in files if str(d.get("contentUrl", "")).startswith(("http://", "https://"))]
    if not downloadable:
        raise DataError(f"{path} lists no downloadable file (FileObject with an http(s) contentUrl).")
    for item in downloadable:
        fmt = str(item.get("encodingFormat", ""))
        if fmt.startswith("git+"):
            raise DataError(
                f"{item['contentUrl']} is a {fmt} repository; clone it and register the image folder with "
                "`kgraft dataset add imagefolder:DIR`."
            )
        target = folder / Path(str(item["contentUrl"]).split("?")[0]).name
        got = _download(str(item["contentUrl"]), target, item.get("sha256"))
        if got.suffix in {".zip", ".tar", ".gz", ".tgz"} and not got.name.endswith("ubyte.gz"):
            shutil.unpack_archive(got, folder / "unpacked")
    if any(folder.glob("*idx3-ubyte*")):
        return f"idx:{folder}"
    if (folder / "unpacked").is_dir():
        return f"imagefolder:{folder / 'unpacked'}"
    raise DataError(f"the files of {path.name} are neither IDX files nor an archive of class folders.")
