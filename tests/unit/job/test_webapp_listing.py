"""The web-app example's static server on a folder without index.html (issue 26 item 1): a page
linking the folder's files (names escaped, dot files left out), not a raw "Error code: 404"."""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def _get(sock_path, path="/"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return data.decode(errors="replace")


def test_folder_without_index_lists_its_files(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "README.md.gz").write_bytes(b"x")
    (folder / "<b>odd.txt").write_text("y")
    (folder / ".secret").write_text("z")
    (folder / "sub").mkdir()
    sock = tmp_path / "s.sock"
    proc = subprocess.Popen([sys.executable, "-m", "batchspawner.job.apps", "static", "--socket", str(sock),
                             "--dir", str(folder)], env={"JHPC_WEBAPP_TITLE": "Shared documents", "PATH": "/usr/bin"})
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        reply = _get(sock)
        assert reply.startswith("HTTP/1.0 200"), reply[:200]
        assert "<title>Shared documents</title>" in reply
        assert '<a href="README.md.gz">README.md.gz</a>' in reply and '<a href="sub/">sub</a>' in reply
        assert "&lt;b&gt;odd.txt" in reply and "<b>odd" not in reply
        assert ".secret" not in reply
        assert _get(sock, "/README.md.gz").startswith("HTTP/1.0 200")
    finally:
        proc.terminate()
        proc.wait(10)
