"""Downloading one file: resumable, checksummed, over plain urllib (``fetch_file``); the mirror URL rewrite.

Resuming
    A file is downloaded into ``<final>.part``. When a ``.part`` exists, the rest is requested with
    ``Range: bytes=N-`` and appended if the server answers 206; a server that answers 200 (Range ignored) restarts
    the file cleanly from byte 0. Only after the last byte and a good checksum (``fetch.checksums``) is the
    ``.part`` renamed (atomically, ``os.replace``) to its final name, so a final file is always complete. A network
    error (refused, reset, timed out, 5xx) keeps the ``.part``: run the same command again and it resumes.

Errors
    HTTP 404/5xx, refused or lost connections, local write failures and checksum mismatches are
    ``shared.errors.UserError``: one line naming the file or URL and what to do.

Mirrors
    The environment variable ``ONCOXAI_FETCH_MIRROR`` (e.g. ``http://127.0.0.1:8000`` or
    ``https://mirror.example.org/prefix``) replaces the scheme and host of every URL; the URL's path (and query) is
    kept and appended to the mirror's own path (``resolve_url``).
"""

from __future__ import annotations

import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Any

from shared.errors import UserError
from shared.logs import get_logger

from .checksums import CHUNK, Sums, expected_digests, file_digests, mismatches

log = get_logger("fetch")

MIRROR_ENV = "ONCOXAI_FETCH_MIRROR"
USER_AGENT = "oncoxai-fetch/0.1 (+python-urllib)"


def resolve_url(url: str, mirror: str | None = None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (default: ``$ONCOXAI_FETCH_MIRROR``, if set)."""
    mirror = os.environ.get(MIRROR_ENV) if mirror is None else mirror
    if not mirror:
        return url
    m = urllib.parse.urlsplit(mirror)
    if m.scheme not in ("http", "https") or not m.netloc:
        raise UserError(f"{MIRROR_ENV}={mirror!r}: expected a URL such as http://127.0.0.1:8000")
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


def _progress_bar(desc: str, total: int | None, initial: int):
    """A byte-counting tqdm bar on stderr; off in logs and CI like shared.logs.progress
    (ONCOXAI_PROGRESS=1 forces it)."""
    from tqdm.auto import tqdm

    forced = os.environ.get("ONCOXAI_PROGRESS")
    disable = None if forced is None else forced == "0"
    return tqdm(
        desc=desc,
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=disable,
        leave=False,
        file=sys.stderr,
    )


def _http_error(url: str, rel: str, exc: urllib.error.HTTPError, part: Path) -> UserError:
    code = exc.code
    if code in (401, 403, 404, 410):
        advice = (
            "the file is not there (moved or renamed?): check its URL in the registry in "
            f"fetch/datasets.yaml against the dataset's homepage, or set {MIRROR_ENV}"
        )
    elif code == 429 or code >= 500:
        advice = "the server is failing or rate-limiting: wait and run the same command again (it resumes)"
    else:
        advice = "unexpected HTTP answer: check the URL and your proxy settings, then run again"
    kept = f"; the partial download {part} is kept" if part.exists() else ""
    return UserError(f"{url}: HTTP {code} {exc.reason} while fetching {rel}: {advice}{kept}")


def _network_error(url: str, rel: str, reason: object, part: Path) -> UserError:
    have = part.stat().st_size if part.exists() else 0
    kept = f"; {have} bytes are kept in {part} and the next run resumes from there" if have else ""
    return UserError(
        f"{url}: network error while fetching {rel} ({reason}): check the connection (or proxy, "
        f"or {MIRROR_ENV}) and run the same command again{kept}"
    )


class _Writer:
    """The .part file; a local write failure (disk full, permissions) is a UserError, not a 'network error'."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        try:
            self.fh = open(path, mode)
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> UserError:
        return UserError(
            f"{self.path}: cannot write ({exc.strerror or exc}): free disk space or fix the folder's "
            f"permissions (or choose another --dest), then run again"
        )

    def write(self, block: bytes) -> None:
        try:
            self.fh.write(block)
        except OSError as exc:
            raise self._error(exc) from None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as err:
            if exc_type is None:
                raise self._error(err) from None
        finally:
            self.fh.close()
        return False


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"^\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def fetch_file(entry: dict[str, Any], folder: Path, sums: Sums, url: str | None = None, timeout: float = 60.0) -> str:
    """Fetch one registry file entry into ``folder / entry['path']``; returns 'skipped' or 'downloaded'.

    ``url`` defaults to the entry's URL passed through ``resolve_url`` (the mirror, if any).
    """
    rel = entry["path"]
    final = folder / rel
    part = final.with_name(final.name + ".part")
    url = url or resolve_url(entry["url"])
    want = expected_digests(entry, sums.get(rel))

    if final.is_file():
        got = file_digests(final, want)
        bad = mismatches(want, got)
        if not bad:
            if not want:
                log.info("%s: present, no checksum known; recording its sha256 (trust on first use)", rel)
            sums.record(rel, got["sha256"])
            log.info("%s: present and verified, skipped", rel)
            return "skipped"
        log.warning("%s: present but its checksum is wrong (%s); downloading it again", rel, "; ".join(bad))
        final.unlink()

    final.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    try:
        try:
            resp = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not offset:
                raise
            exc.close()
            # Range not satisfiable: the .part is already complete (verified below) or longer than the file.
            total = re.search(r"/(\d+)", exc.headers.get("Content-Range", "") or "")
            if total and int(total.group(1)) == offset:
                resp = None
            else:
                log.warning("%s: the server cannot resume from byte %d; restarting from zero", rel, offset)
                part.unlink()
                offset = 0
                resp = _open(url, 0, timeout)
        if resp is not None:
            with resp:
                mode = "ab"
                if offset and resp.status == 206:
                    start = _content_range_start(resp.headers.get("Content-Range"))
                    if start != offset:
                        raise UserError(
                            f"{url}: the server resumed {rel} at byte {start}, not {offset}: delete "
                            f"{part} and run again"
                        )
                    log.info("%s: resuming at byte %d", rel, offset)
                elif resp.status in (200, 206):
                    if offset:
                        log.info("%s: the server ignored the Range request; restarting from zero", rel)
                    offset, mode = 0, "wb"
                else:
                    raise UserError(f"{url}: unexpected HTTP {resp.status} while fetching {rel}: run again")
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                received = 0
                with (
                    _Writer(part, mode) as out,
                    _progress_bar(Path(rel).name, None if length is None else offset + length, offset) as bar,
                ):
                    while block := resp.read(CHUNK):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
                if length is not None and received < length:
                    raise _network_error(url, rel, f"connection closed after {received} of {length} bytes", part)
    except urllib.error.HTTPError as exc:
        raise _http_error(url, rel, exc, part) from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:  # refused, reset, timed out, truncated
        reason = getattr(exc, "reason", None) or exc.__class__.__name__ + (f": {exc}" if str(exc) else "")
        raise _network_error(url, rel, reason, part) from None

    if entry.get("size") is not None and part.stat().st_size != entry["size"]:
        have = part.stat().st_size
        if have < entry["size"]:
            raise _network_error(url, rel, f"the server sent {have} of the {entry['size']} published bytes", part)
        part.unlink()
        raise UserError(
            f"{rel}: {have} bytes downloaded from {url}, but {entry['size']} published: the download was "
            "deleted; run again, and if it repeats the source changed"
        )
    got = file_digests(part, want)
    bad = mismatches(want, got)
    if bad:
        part.unlink()
        source = "published checksum" if any(entry.get(a) for a in ("sha256", "md5")) else f"{sums.path.name} record"
        raise UserError(
            f"{rel}: checksum mismatch against the {source} ({'; '.join(bad)}), downloaded from {url}: "
            f"the download was deleted; run again, and if it repeats the source changed (check it, then "
            f"delete the line for {rel} in {sums.path})"
        )
    os.replace(part, final)
    if not want:
        log.info(
            "%s: no published checksum; recorded sha256 %s in %s (trust on first use)", rel, got["sha256"], sums.path
        )
    sums.record(rel, got["sha256"])
    log.info("%s: downloaded (%d bytes)", rel, final.stat().st_size)
    return "downloaded"


def server_size(url: str, timeout: float = 30.0) -> int | None:
    """The Content-Length the server announces for ``url`` (a HEAD request), or None when it gives none."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        raise UserError(f"{url}: HTTP {exc.code} ({exc.reason}) when asking for its size; check the URL") from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        raise UserError(
            f"{url}: cannot ask for its size ({getattr(exc, 'reason', exc)}); check the connection"
        ) from None
    return int(length) if length and length.isdigit() else None
