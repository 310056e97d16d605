"""fetch (python -m fetch, make fetch): resumable, checksummed downloads, tested against a local HTTP server only.

Every test talks to a threaded ``http.server`` on 127.0.0.1 (an ephemeral port) that serves files the test writes,
honours ``Range: bytes=N-`` (unless told not to) and counts the requests and bytes it served. The registries used
here point at 127.0.0.1 only; the built-in registry is exercised only through ``ONCOXAI_FETCH_MIRROR`` pointed at
the local server. As a safety net, any in-process connection to a host other than loopback fails the test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fetch import cli, download, registry
from shared.errors import UserError

from ..support import REPO

pytestmark = pytest.mark.timeout(120)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# ---------------------------------------------------------------------------------------------------------------
# The local server
# ---------------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        status = srv.fail.get(self.path)
        if status:
            return self._reply(status, b"failing on purpose\n")
        file = srv.root / self.path.lstrip("/")
        if not file.is_file():
            return self._reply(404, b"not found\n")
        data = file.read_bytes()
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            assert m, rng
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, status = data[start : end + 1], 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{file.stat().st_size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        cut = srv.drop_after.get(self.path)
        if cut is not None:  # announce the full length, send part of it, hang up
            data = data[:cut]
        with srv.lock:  # counted before the write: the client may finish reading before this thread runs again
            srv.bytes_served += len(data)
        self.wfile.write(data)
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True

    def do_HEAD(self):
        srv = self.server
        with srv.lock:
            srv.requests.append({"path": self.path, "method": "HEAD"})
        file = srv.root / self.path.lstrip("/")
        self.send_response(200 if file.is_file() else 404)
        self.send_header("Content-Length", str(file.stat().st_size if file.is_file() else 0))
        self.end_headers()

    def _reply(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.bytes_served = 0
        self.ignore_range = False
        self.fail: dict[str, int] = {}  # path -> HTTP status to answer with
        self.drop_after: dict[str, int] = {}  # path -> bytes to send before closing the connection

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, rel: str, data: bytes) -> str:
        """Write a fixture file the server will serve; returns its URL."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.base}/{rel}"

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes_served = 0


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No proxy (it would take 127.0.0.1 elsewhere), no mirror from the caller's shell, loopback connections only."""
    for var in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        download.MIRROR_ENV,
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("ONCOXAI_PROGRESS", "0")
    real = socket.create_connection

    def loopback_only(address, *args, **kwargs):
        assert address[0] in LOOPBACK, f"a test tried to reach {address[0]}: tests must stay on 127.0.0.1"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)


@pytest.fixture
def server(tmp_path):
    srv = _Server(tmp_path / "served")
    (tmp_path / "served").mkdir()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _payload(n: int = 300_000, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes (so a wrong offset cannot produce the same file)."""
    out, block, i = bytearray(), hashlib.sha256(str(seed).encode()).digest(), 0
    while len(out) < n:
        block = hashlib.sha256(block + i.to_bytes(8, "little")).digest()
        out += block
        i += 1
    return bytes(out[:n])


def _registry(*files: dict, verified: bool = True) -> dict:
    for f in files:
        assert f["url"].startswith("http://127.0.0.1:"), f["url"]
    return {
        "toy": {
            "description": "a test dataset",
            "homepage": "http://127.0.0.1/",
            "verified": verified,
            "files": list(files),
        }
    }


def _run(reg: dict, dest: Path, *extra: str) -> int:
    return cli.main(["toy", "--dest", str(dest), "--timeout", "10", *extra], registry=reg)


def _error_lines(err: str) -> list[str]:
    """The "error:" lines of stderr; an error must be the last thing printed and fit on its line."""
    lines = err.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        assert lines[-1] == errors[-1], err
    return errors


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------------------------


def test_full_download_lands_and_records_sha256(server, tmp_path):
    data = _payload()
    reg = _registry({"name": "counts", "url": server.add("a/counts.gct.gz", data), "path": "counts.gct.gz"})
    dest = tmp_path / "data"
    assert _run(reg, dest) == 0
    final = dest / "toy" / "counts.gct.gz"
    assert final.read_bytes() == data
    assert not final.with_name("counts.gct.gz.part").exists()
    assert (dest / "toy" / "SHA256SUMS").read_text() == f"{_sha(data)}  counts.gct.gz\n"
    assert server.requests == [{"path": "/a/counts.gct.gz", "range": None}]
    assert server.bytes_served == len(data)


def test_nested_paths_and_published_checksums(server, tmp_path):
    a, b = _payload(5000, 1), _payload(7000, 2)
    reg = _registry(
        {"name": "a", "url": server.add("x/a.txt", a), "path": "sub/a.txt", "sha256": _sha(a)},
        {"name": "b", "url": server.add("x/b.txt", b), "path": "b.txt", "md5": hashlib.md5(b).hexdigest()},
    )
    assert _run(reg, tmp_path) == 0
    assert (tmp_path / "toy" / "sub" / "a.txt").read_bytes() == a
    assert (tmp_path / "toy" / "b.txt").read_bytes() == b
    sums = (tmp_path / "toy" / "SHA256SUMS").read_text()
    assert f"{_sha(a)}  sub/a.txt\n" in sums and f"{_sha(b)}  b.txt\n" in sums


def test_resume_fetches_only_the_missing_bytes(server, tmp_path):
    data = _payload()
    half = len(data) // 2
    reg = _registry({"name": "counts", "url": server.add("counts.gct.gz", data), "path": "counts.gct.gz"})
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "counts.gct.gz.part").write_bytes(data[:half])
    assert _run(reg, tmp_path) == 0
    assert server.requests == [{"path": "/counts.gct.gz", "range": f"bytes={half}-"}]
    assert server.bytes_served == len(data) - half
    assert (folder / "counts.gct.gz").read_bytes() == data
    assert not (folder / "counts.gct.gz.part").exists()
    assert (folder / "SHA256SUMS").read_text() == f"{_sha(data)}  counts.gct.gz\n"


def test_server_ignoring_range_still_yields_the_right_file(server, tmp_path):
    data = _payload()
    server.ignore_range = True
    reg = _registry({"name": "counts", "url": server.add("counts.gct.gz", data), "path": "counts.gct.gz"})
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "counts.gct.gz.part").write_bytes(b"\xff" * (len(data) // 2))  # wrong bytes: must not survive
    assert _run(reg, tmp_path) == 0
    assert server.requests[0]["range"] == f"bytes={len(data) // 2}-"  # it asked ...
    assert server.bytes_served == len(data)  # ... got everything, and started over
    assert (folder / "counts.gct.gz").read_bytes() == data
    assert not (folder / "counts.gct.gz.part").exists()


def test_a_complete_part_is_finished_without_refetching(server, tmp_path):
    """A .part holding every byte (killed before the rename) gets 416 from the server and is verified, not refetched."""
    data = _payload(10_000)
    reg = _registry({"name": "f", "url": server.add("f.bin", data), "path": "f.bin", "sha256": _sha(data)})
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "f.bin.part").write_bytes(data)
    assert _run(reg, tmp_path) == 0
    assert server.bytes_served == 0
    assert (tmp_path / "toy" / "f.bin").read_bytes() == data


def test_second_run_with_the_file_present_makes_no_request(server, tmp_path):
    data = _payload()
    reg = _registry({"name": "counts", "url": server.add("counts.gct.gz", data), "path": "counts.gct.gz"})
    assert _run(reg, tmp_path) == 0
    mtime = (tmp_path / "toy" / "counts.gct.gz").stat().st_mtime_ns
    server.reset_counts()
    assert _run(reg, tmp_path) == 0
    assert server.requests == [] and server.bytes_served == 0
    assert (tmp_path / "toy" / "counts.gct.gz").stat().st_mtime_ns == mtime


def test_present_file_with_a_bad_checksum_is_fetched_again(server, tmp_path):
    data = _payload(20_000)
    reg = _registry({"name": "f", "url": server.add("f.bin", data), "path": "f.bin"})
    assert _run(reg, tmp_path) == 0
    (tmp_path / "toy" / "f.bin").write_bytes(b"corrupted on disk")
    server.reset_counts()
    assert _run(reg, tmp_path) == 0
    assert server.bytes_served == len(data)
    assert (tmp_path / "toy" / "f.bin").read_bytes() == data


def test_progress_bar_path_works(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ONCOXAI_PROGRESS", "1")
    data = _payload(50_000)
    reg = _registry({"name": "f", "url": server.add("f.bin", data), "path": "f.bin"})
    assert _run(reg, tmp_path) == 0
    assert (tmp_path / "toy" / "f.bin").read_bytes() == data


def test_only_fetches_the_named_files(server, tmp_path, capsys):
    reg = _registry(
        {"name": "a", "url": server.add("a.txt", b"a"), "path": "a.txt"},
        {"name": "b", "url": server.add("b.txt", b"b"), "path": "b.txt"},
    )
    assert _run(reg, tmp_path, "--only", "b.txt") == 0
    assert [r["path"] for r in server.requests] == ["/b.txt"]
    assert not (tmp_path / "toy" / "a.txt").exists()
    assert _run(reg, tmp_path, "--only", "nope") == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "'nope'" in line and "toy" in line


# ---------------------------------------------------------------------------------------------------------------
# Errors: one line, exit code 2, no partial final file
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["published-sha256", "published-md5", "recorded"])
def test_checksum_mismatch_leaves_nothing_and_exits_2(server, tmp_path, capsys, where):
    data = _payload()
    entry = {"name": "counts", "url": server.add("counts.gct.gz", data), "path": "counts.gct.gz"}
    folder = tmp_path / "toy"
    folder.mkdir()
    if where == "published-sha256":
        entry["sha256"] = "0" * 64
    elif where == "published-md5":
        entry["md5"] = "0" * 32
    else:  # trust on first use: a previous download recorded another sha256
        (folder / "SHA256SUMS").write_text(f"{'1' * 64}  counts.gct.gz\n")
    assert _run(_registry(entry), tmp_path) == 2
    err = capsys.readouterr().err
    [line] = _error_lines(err)
    assert "counts.gct.gz" in line and "checksum mismatch" in line
    assert not (folder / "counts.gct.gz").exists()
    assert not (folder / "counts.gct.gz.part").exists()


def test_http_404_exits_2_with_one_line_naming_the_url(server, tmp_path, capsys):
    url = f"{server.base}/missing/counts.gct.gz"
    reg = _registry({"name": "counts", "url": url, "path": "counts.gct.gz"})
    assert _run(reg, tmp_path) == 2
    err = capsys.readouterr().err
    [line] = _error_lines(err)
    assert url in line and "404" in line and "registry" in line
    assert not (tmp_path / "toy" / "counts.gct.gz").exists()
    assert not (tmp_path / "toy" / "counts.gct.gz.part").exists()


def test_http_5xx_keeps_the_part_for_resume(server, tmp_path, capsys):
    data = _payload()
    url = server.add("counts.gct.gz", data)
    reg = _registry({"name": "counts", "url": url, "path": "counts.gct.gz"})
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "counts.gct.gz.part").write_bytes(data[:1000])
    server.fail["/counts.gct.gz"] = 503
    assert _run(reg, tmp_path) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert url in line and "503" in line and "again" in line
    assert (tmp_path / "toy" / "counts.gct.gz.part").read_bytes() == data[:1000]
    assert not (tmp_path / "toy" / "counts.gct.gz").exists()
    server.fail.clear()
    assert _run(reg, tmp_path) == 0
    assert (tmp_path / "toy" / "counts.gct.gz").read_bytes() == data


def test_connection_refused_exits_2_naming_the_url(tmp_path, capsys):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/counts.gct.gz"
    assert _run(_registry({"name": "counts", "url": url, "path": "counts.gct.gz"}), tmp_path) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert url in line and "network error" in line
    assert not (tmp_path / "toy" / "counts.gct.gz").exists()


def test_connection_lost_midway_keeps_the_part_and_the_next_run_resumes(server, tmp_path, capsys):
    data = _payload()
    reg = _registry({"name": "counts", "url": server.add("counts.gct.gz", data), "path": "counts.gct.gz"})
    server.drop_after["/counts.gct.gz"] = 100_000
    assert _run(reg, tmp_path) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "counts.gct.gz" in line and "resumes" in line
    part = tmp_path / "toy" / "counts.gct.gz.part"
    assert part.read_bytes() == data[:100_000]
    assert not (tmp_path / "toy" / "counts.gct.gz").exists()
    server.drop_after.clear()
    server.reset_counts()
    assert _run(reg, tmp_path) == 0
    assert server.requests == [{"path": "/counts.gct.gz", "range": "bytes=100000-"}]
    assert server.bytes_served == len(data) - 100_000
    assert (tmp_path / "toy" / "counts.gct.gz").read_bytes() == data


def test_unknown_dataset_exits_2(tmp_path, capsys):
    assert cli.main(["no-such-dataset", "--dest", str(tmp_path)]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "no-such-dataset" in line and "--list" in line


def test_unverified_dataset_warns(server, tmp_path, capsys):
    reg = _registry({"name": "f", "url": server.add("f.txt", b"x"), "path": "f.txt"}, verified=False)
    assert _run(reg, tmp_path) == 0
    assert "NOT verified" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"name": "f", "url": "http://127.0.0.1:1/f", "path": "../escape.txt"}, "path must be a relative file path"),
        ({"name": "f", "url": "http://127.0.0.1:1/f", "path": "/abs.txt"}, "path must be a relative file path"),
        ({"name": "f", "url": "http://127.0.0.1:1/f", "path": "SHA256SUMS"}, "path must be a relative file path"),
        ({"name": "f", "url": "ftp://127.0.0.1/f", "path": "f.txt"}, "url must be http(s)"),
        ({"name": "f", "path": "f.txt"}, "missing 'url'"),
        ({"name": "f", "url": "", "path": "f.txt"}, "missing 'url'"),
        ({"name": "f", "url": "http://127.0.0.1:1/f", "path": "f.txt", "sha256": "not-hex"}, "'sha256' is not"),
        ({"name": "f", "url": "http://127.0.0.1:1/f", "path": "f.txt", "md5": "A" * 32}, "'md5' is not"),
        ({"name": "f", "url": "http://127.0.0.1:1/f", "path": "f.txt", "size": -1}, "'size' must be"),
        ({"name": "f", "url": "http://127.0.0.1:1/f", "path": "f.txt", "sizes": 1}, "unknown key 'sizes'"),
    ],
)
def test_malformed_registry_entries_are_refused(tmp_path, capsys, bad, says):
    assert cli.main(["toy", "--dest", str(tmp_path)], registry={"toy": {"files": [bad]}}) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "dataset 'toy', file 'f'" in line and says in line, line
    assert not (tmp_path / "escape.txt").exists()


def test_registry_without_files_or_with_duplicates_is_refused():
    with pytest.raises(UserError, match=r"^registry: dataset 'toy' has no 'files' list$"):
        registry.check_registry({"toy": {"description": "x"}})
    twice = {"name": "f", "url": "http://127.0.0.1:1/f", "path": "f.txt"}
    with pytest.raises(UserError, match=r"^registry: dataset 'toy', file 'g': duplicate name or path$"):
        registry.check_registry({"toy": {"files": [twice, {**twice, "name": "g"}]}})


# ---------------------------------------------------------------------------------------------------------------
# The built-in registry and the CLI (through the mirror variable, never the internet)
# ---------------------------------------------------------------------------------------------------------------


PANCAN_SUMS = {
    "EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv": ("02e72c33071307ff6570621480d3c90b", 1882540959),
    "TCGA-CDR-SupplementalTableS1.xlsx": ("a4591b2dcee39591f59e5e25a6ce75fa", 2945129),
}


def test_builtin_registry_is_well_formed():
    registry.check_registry(registry.REGISTRY)
    assert {"gtex-v8", "gse85217", "gbm-smartseq2"} <= set(registry.REGISTRY)
    gtex = registry.REGISTRY["gtex-v8"]["files"]
    counts = [f for f in gtex if f["path"].startswith("gene_reads_2017-06-05_v8_")]
    assert len(counts) == 54 == len({f["path"] for f in counts})
    assert all(
        f["url"].startswith("https://storage.googleapis.com/adult-gtex/bulk-gex/v8/rna-seq/counts-by-tissue/")
        and f["path"].endswith(".gct.gz")
        for f in counts
    )
    assert any(f["path"] == "GTEx_Analysis_v8_Annotations_SampleAttributesDS.txt" for f in gtex)
    slugs = {f["name"]: f["path"] for f in counts}  # the slug rule where the tissue names are least regular
    for tissue, slug in (
        ("Adipose - Visceral (Omentum)", "adipose_visceral_omentum"),
        ("Brain - Spinal cord (cervical c-1)", "brain_spinal_cord_cervical_c-1"),
        ("Cells - EBV-transformed lymphocytes", "cells_ebv-transformed_lymphocytes"),
        ("Skin - Not Sun Exposed (Suprapubic)", "skin_not_sun_exposed_suprapubic"),
    ):
        assert registry.gtex_slug(tissue) == slug and slugs[slug] == f"gene_reads_2017-06-05_v8_{slug}.gct.gz"
    assert [f["name"] for f in gtex if f.get("optional")] == ["all-tissues"]
    # no invented checksums: only GDC publishes them (its PanCanAtlas manifest)
    for name, ds in registry.REGISTRY.items():
        assert all(f["url"].startswith("https://") for f in ds["files"])
        sums = {f["path"]: (f.get("md5"), f.get("size")) for f in ds["files"] if f.get("md5") or f.get("sha256")}
        assert ds["verified"] and sums == (PANCAN_SUMS if name == "tcga-pancan" else {}), name


# ---------------------------------------------------------------------------------------------------------------
# fetch/datasets.yaml: read, validated and expanded at import
# ---------------------------------------------------------------------------------------------------------------

_GOOD_YAML = """\
toy:
  description: a test dataset
  homepage: http://127.0.0.1/
  verified: true
  notes: what the files hold
  tissue_files:
    tissues: [Brain - Cortex, Whole Blood]
    name: "{slug}"
    path: "reads_{slug}.gct.gz"
    url: "http://127.0.0.1:1/by-tissue/{path}"
  files:
    - name: attributes
      url: http://127.0.0.1:1/attributes.txt
      path: attributes.txt
      md5: "0123456789abcdef0123456789abcdef"
      size: 12
      optional: true
"""


def test_the_builtin_yaml_loads_into_the_registry():
    assert registry.DATASETS_FILE == REPO / "fetch" / "datasets.yaml"
    assert registry.load_registry() == registry.REGISTRY
    assert registry.load_registry(registry.DATASETS_FILE) == registry.REGISTRY


def test_a_yaml_dataset_expands_tissue_files_first_and_keeps_only_the_keys_it_states(tmp_path):
    path = tmp_path / "datasets.yaml"
    path.write_text(_GOOD_YAML)
    assert registry.load_registry(path) == {
        "toy": {
            "description": "a test dataset",
            "homepage": "http://127.0.0.1/",
            "verified": True,
            "notes": "what the files hold",
            "files": [
                {"name": "brain_cortex", "url": "http://127.0.0.1:1/by-tissue/reads_brain_cortex.gct.gz",
                 "path": "reads_brain_cortex.gct.gz"},
                {"name": "whole_blood", "url": "http://127.0.0.1:1/by-tissue/reads_whole_blood.gct.gz",
                 "path": "reads_whole_blood.gct.gz"},
                {"name": "attributes", "url": "http://127.0.0.1:1/attributes.txt", "path": "attributes.txt",
                 "md5": "0123456789abcdef0123456789abcdef", "size": 12, "optional": True},
            ],
        }
    }  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("path: attributes.txt", "path: ../attributes.txt", "file 'attributes': path must be a relative file path"),
        ("      url: http://127.0.0.1:1/attributes.txt\n", "", "file 'attributes': missing 'url'"),
        ("url: http://127.0.0.1:1/attributes.txt", "ur1: http://127.0.0.1:1/attributes.txt", "unknown key 'ur1'"),
        ('md5: "0123456789abcdef0123456789abcdef"', "md5: 1234", "file 'attributes': 'md5' is not a lower-case hex"),
        ("size: 12", "size: -12", "file 'attributes': 'size' must be a number of bytes"),
        ("verified: true", "verified: yes please", "verified: Input should be a valid boolean"),
        ('url: "http://127.0.0.1:1/by-tissue/{path}"', 'url: "http://h/{tissu}"', "tissue_files.url: bad template"),
        ('path: "reads_{slug}.gct.gz"', 'path: "a/../{slug}"', "file 'brain_cortex': path must be a relative file"),
        ("path: attributes.txt", "path: reads_whole_blood.gct.gz", "file 'attributes': duplicate name or path"),
        ("  files:\n", "  filez:\n", "unknown key 'filez'"),
    ],
)
def test_a_malformed_yaml_entry_is_a_one_line_error_naming_dataset_and_key(tmp_path, old, new, says):
    assert old in _GOOD_YAML
    path = tmp_path / "datasets.yaml"
    path.write_text(_GOOD_YAML.replace(old, new, 1))
    with pytest.raises(UserError) as info:
        registry.load_registry(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: dataset 'toy'") and says in message, message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("toy: [\n", "line 2: not valid YAML"),
        ("- toy\n", "expected a mapping of dataset names"),
        ("toy:\n  description: no files\n", "dataset 'toy' has no 'files' list"),
        ("toy: 3\n", "dataset 'toy': the dataset: Input should be a valid dictionary"),
    ],
)
def test_a_malformed_yaml_file_is_a_one_line_error(tmp_path, text, says):
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        registry.load_registry(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path)) and says in str(info.value)


def test_cli_with_a_malformed_builtin_yaml_is_one_line_and_exit_2(tmp_path):
    """python -m fetch reads fetch/datasets.yaml as it starts: a copy of the package with a broken entry."""
    shutil.copytree(REPO / "fetch", tmp_path / "fetch", ignore=shutil.ignore_patterns("__pycache__"))
    yaml_file = tmp_path / "fetch" / "datasets.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("path: TCGA-CDR-SupplementalTableS1.xlsx", "path: ../x.xlsx"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "fetch", "--list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    [line] = _error_lines(proc.stderr)
    assert line.startswith("error: fetch/datasets.yaml: dataset 'tcga-pancan', file 'clinical-cdr': path must"), line


# ---------------------------------------------------------------------------------------------------------------
# One fetch per dataset folder
# ---------------------------------------------------------------------------------------------------------------


def test_a_second_fetch_of_the_same_dataset_stops_at_once(server, tmp_path, capsys):
    reg = _registry({"name": "f", "url": server.add("f.txt", b"x"), "path": "f.txt"})
    (tmp_path / "toy").mkdir()
    with cli.dataset_lock(tmp_path / "toy"):  # another fetch holds the folder
        assert _run(reg, tmp_path) == 2
        [line] = _error_lines(capsys.readouterr().err)
        assert "another fetch is writing this dataset" in line and str(tmp_path / "toy") in line
        assert server.requests == [] and not (tmp_path / "toy" / "f.txt").exists()
    assert _run(reg, tmp_path) == 0
    assert (tmp_path / "toy" / "f.txt").read_bytes() == b"x"
    assert not (tmp_path / "toy" / cli.LOCK_FILE).exists()  # released and removed


def test_mirror_replaces_scheme_and_host():
    url = "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE85nnn/GSE85217/matrix/GSE85217_series_matrix.txt.gz?x=1"
    assert (
        download.resolve_url(url, "http://127.0.0.1:8000")
        == "http://127.0.0.1:8000/geo/series/GSE85nnn/GSE85217/matrix/GSE85217_series_matrix.txt.gz?x=1"
    )
    assert (
        download.resolve_url(url, "http://127.0.0.1:8000/pre/")
        == "http://127.0.0.1:8000/pre/geo/series/GSE85nnn/GSE85217/matrix/GSE85217_series_matrix.txt.gz?x=1"
    )
    assert download.resolve_url(url, "") == url


def test_builtin_dataset_through_the_mirror(server, tmp_path, monkeypatch):
    data = _payload(40_000)
    server.add("geo/series/GSE85nnn/GSE85217/matrix/GSE85217_series_matrix.txt.gz", data)
    monkeypatch.setenv(download.MIRROR_ENV, server.base)
    assert cli.main(["gse85217", "--dest", str(tmp_path), "--only", "series-matrix", "--timeout", "10"]) == 0
    assert (tmp_path / "gse85217" / "GSE85217_series_matrix.txt.gz").read_bytes() == data
    assert [r["path"] for r in server.requests] == [
        "/geo/series/GSE85nnn/GSE85217/matrix/GSE85217_series_matrix.txt.gz"
    ]


def _cli(*args: str, mirror: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({download.MIRROR_ENV: mirror, "no_proxy": "*", "NO_PROXY": "*", "ONCOXAI_PROGRESS": "0"})
    return subprocess.run(
        [sys.executable, "-m", "fetch", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_404_is_one_line_and_exit_2(server, tmp_path):
    """The real entry point, with every URL sent to the local server (which does not have the file)."""
    proc = _cli(
        "gbm-smartseq2", "--dest", str(tmp_path), "--only", "smartseq2-tpm", "--timeout", "10", mirror=server.base
    )
    assert proc.returncode == 2, proc.stderr
    [line] = _error_lines(proc.stderr)
    assert f"{server.base}/geo/samples/GSM3828nnn/GSM3828672/suppl/" in line and "404" in line
    assert len(server.requests) == 1
    assert not list((tmp_path / "gbm-smartseq2").glob("GSM3828672*"))


def test_cli_list(server, tmp_path):
    proc = _cli("--list", mirror=server.base)
    assert proc.returncode == 0, proc.stderr
    assert {"gtex-v8", "gse85217", "gbm-smartseq2"} <= {line.split()[0] for line in proc.stdout.splitlines()}
    proc = _cli("gtex-v8", "--list", "--dest", str(tmp_path), mirror=server.base)
    assert proc.returncode == 0, proc.stderr
    assert "whole_blood" in proc.stdout and "sample-attributes" in proc.stdout
    assert server.requests == []


# ---------------------------------------------------------------------------------------------------------------
# Sizes, optional files, GDC manifests
# ---------------------------------------------------------------------------------------------------------------


def test_list_sizes_asks_the_server_and_optional_files_wait_for_only(server, tmp_path, capsys):
    small, big = _payload(2_500, seed=1), _payload(1_500_000, seed=2)
    reg = _registry(
        {"name": "small", "url": server.add("small.txt", small), "path": "small.txt"},
        {"name": "big", "url": server.add("big.gct.gz", big), "path": "big.gct.gz", "optional": True},
    )
    assert _run(reg, tmp_path, "--list", "--sizes") == 0
    out = capsys.readouterr().out
    assert "2.5 KB" in out and "1.5 MB" in out and "only with --only" in out and "total: 1.5 MB" in out
    assert [r.get("method") for r in server.requests] == ["HEAD", "HEAD"]
    server.reset_counts()
    assert _run(reg, tmp_path) == 0
    assert [r["path"] for r in server.requests] == ["/small.txt"]  # the optional file is not fetched by default
    assert _run(reg, tmp_path, "--only", "big") == 0
    assert (tmp_path / "toy" / "big.gct.gz").read_bytes() == big


def _manifest(tmp_path, rows) -> Path:
    text = "id\tfilename\tmd5\tsize\tstate\n" + "".join("\t".join(map(str, r)) + "\treleased\n" for r in rows)
    path = tmp_path / "gdc_manifest.2026-12-03.txt"
    path.write_text(text)
    return path


def test_gdc_manifest_files_land_in_id_folders_with_published_md5_and_size(server, tmp_path, monkeypatch):
    ids = ["6b1b0e8a-7c3e-4c3f-9b8a-5f7f1b7b0c01", "0f5d9e2c-1a2b-4c3d-8e9f-0a1b2c3d4e02"]
    data = [_payload(70_000, seed=3), _payload(50_000, seed=4)]
    for file_id, payload in zip(ids, data, strict=False):
        server.add(f"data/{file_id}", payload)
    # a STAR counts file's name starts with a UUID of its own, not the File ID the URL and the folder use
    names = [
        f"{u}.rna_seq.augmented_star_gene_counts.tsv"
        for u in ("d6a8c0e4-2f1b-4e5d-9c3a-7b8e9f0a1b11", "5e7f9a1b-3c2d-4e6f-8a0b-1c2d3e4f5a12")
    ]
    manifest = _manifest(
        tmp_path, [(i, n, hashlib.md5(d).hexdigest(), len(d)) for i, n, d in zip(ids, names, data, strict=False)]
    )
    monkeypatch.setenv(download.MIRROR_ENV, server.base)
    # the connection drops after 30,000 bytes of the first file: the run fails, the next one resumes
    server.drop_after[f"/data/{ids[0]}"] = 30_000
    assert cli.main(["--manifest", str(manifest), "--dest", str(tmp_path), "--timeout", "10"]) == 2
    del server.drop_after[f"/data/{ids[0]}"]
    server.reset_counts()
    assert cli.main(["--manifest", str(manifest), "--dest", str(tmp_path), "--timeout", "10"]) == 0
    for file_id, name, payload in zip(ids, names, data, strict=False):
        assert (tmp_path / "gdc" / file_id / name).read_bytes() == payload
    assert server.requests[0]["range"] == "bytes=30000-" and server.bytes_served == 40_000 + 50_000


def test_gdc_manifest_size_mismatch_and_bad_manifest(server, tmp_path, monkeypatch, capsys):
    payload = _payload(10_000, seed=5)
    server.add("data/abc", payload)
    monkeypatch.setenv(download.MIRROR_ENV, server.base)
    manifest = _manifest(tmp_path, [("abc", "x.tsv", hashlib.md5(payload).hexdigest(), 9_000)])
    assert cli.main(["--manifest", str(manifest), "--dest", str(tmp_path), "--timeout", "10"]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "10000 bytes downloaded" in line and "9000 published" in line
    assert not list((tmp_path / "gdc").rglob("x.tsv*"))
    bad = tmp_path / "not_a_manifest.txt"
    bad.write_text("file\tname\n")
    assert cli.main(["--manifest", str(bad), "--dest", str(tmp_path)]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert str(bad) in line and "not a GDC manifest" in line
