"""How much memory does the server need to receive (and serve) a big tus upload?

Starts the real server (uvicorn, as ``make serve`` does; ``--server daphne``
for the development server) on a fresh SQLite database and media directory,
uploads a file of ``--size-mb`` MB with tuspy (the tus client the tests use)
and reports how far the server's resident memory rose above its level
before the upload: VmHWM (the kernel's peak, reset before each phase
through /proc/<pid>/clear_refs) and the peak of VmRSS sampled every 10 ms.
Then it downloads the file through its attachment URL the same way.

    .venv/bin/python bench/upload_memory.py                 # 200 MB, uvicorn
    .venv/bin/python bench/upload_memory.py --server daphne --chunk-mb 8

Not a test: numbers depend on the machine; a pass is "a few MB", whatever
the file size.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tusclient.client import TusClient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MB = 1000 * 1000
MiB = 1024 * 1024
APP = "project.asgi:application"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_kb(pid: int, field: str) -> int:
    """Return a field of /proc/<pid>/status (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Sampler:
    """Samples a process's VmRSS in a thread and remembers the peak."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid, self.every = pid, every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))
            time.sleep(self.every)

    def __enter__(self) -> Sampler:
        # Reset the kernel's peak (VmHWM) to the current RSS; needs Linux >= 4.0.
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.peak = status_kb(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def manage(env: dict[str, str], *args: str) -> str:
    """Run a manage.py command; return its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def server_command(kind: str, port: int) -> list[str]:
    """Return the command line of the server under test."""
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), APP]
    return [
        str(BIN / "uvicorn"), APP, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--lifespan", "off",
    ]  # fmt: skip


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``, a MiB at a time; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for start in range(0, size, MiB):
            block = os.urandom(min(MiB, size - start))
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def upload(url: str, token: str, path: Path, chunk: int | None, room: str) -> str:
    """Upload ``path`` with tuspy; return the upload URL."""
    client = TusClient(f"{url}/api/uploads/", headers={"Authorization": f"Bearer {token}"})
    kwargs = {"chunk_size": chunk} if chunk else {}  # tuspy's default: the whole file in one PATCH
    uploader = client.uploader(file_path=str(path), metadata={"filename": path.name, "room": room}, **kwargs)
    uploader.upload()
    return uploader.url


def download(url: str, token: str, path: str) -> str:
    """Stream an attachment to nowhere; return its SHA-256."""
    digest = hashlib.sha256()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", url + path, headers=headers, timeout=120) as response:
        response.raise_for_status()
        for block in response.iter_bytes():
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--size-mb", type=int, default=200, help="file size in MB (default 200)")
    parser.add_argument(
        "--chunk-mb",
        type=float,
        action="append",
        help="PATCH size in MiB; repeat for several runs; 0 = the whole file in one PATCH (default: 0 and 8)",
    )
    args = parser.parse_args()
    chunks = args.chunk_mb if args.chunk_mb is not None else [0, 8]

    with tempfile.TemporaryDirectory(prefix="upload-memory-") as tmp:
        tmpdir = Path(tmp)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}},
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-upload-memory",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SQLITE_PATH": str(tmpdir / "db.sqlite3"),
            "DJANGO_MEDIA_ROOT": str(tmpdir / "media"),
            "UPLOADS_MAX_SIZE": str(10 * args.size_mb * MB),
        }
        manage(env, "migrate", "-v0")
        manage(
            env,
            "shell",
            "-c",
            "from django.contrib.auth.models import User; User.objects.create_user('bench')",
        )
        token = manage(env, "create_token", "bench").strip()
        source = tmpdir / "upload.bin"
        size = args.size_mb * MB
        expected = make_file(source, size)
        warmup = tmpdir / "warmup.bin"
        warmup.write_bytes(os.urandom(3 * MiB))

        log = (tmpdir / "server.log").open("wb")
        server = subprocess.Popen(
            server_command(args.server, port), cwd=ROOT, env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            # Warm up every code path once (imports, first DB connection, storage dirs).
            warm_url = upload(url, token, warmup, MiB, "bench")
            download(url, token, f"/api/uploads/{warm_url.rsplit('/', 1)[-1]}/file")

            print(f"server: {args.server}, file: {args.size_mb} MB, Python {sys.version.split()[0]}")
            print(f"{'phase':<34} {'RSS before':>11} {'peak VmHWM':>11} {'peak sampled':>13} {'growth':>9}")
            for chunk_mb in chunks:
                chunk = int(chunk_mb * MiB) or None
                label = f"upload, {f'{chunk_mb:g} MiB PATCHes' if chunk else 'one PATCH'}"
                before = status_kb(server.pid, "VmRSS")
                with Sampler(server.pid) as sampler:
                    upload_url = upload(url, token, source, chunk, "bench")
                report(label, before, status_kb(server.pid, "VmHWM"), sampler.peak)

                before = status_kb(server.pid, "VmRSS")
                with Sampler(server.pid) as sampler:
                    got = download(url, token, f"/api/uploads/{upload_url.rsplit('/', 1)[-1]}/file")
                report(
                    "download through the attachment URL",
                    before,
                    status_kb(server.pid, "VmHWM"),
                    sampler.peak,
                )
                assert got == expected, "the downloaded file differs from the uploaded one"
            print("byte for byte: identical")
        finally:
            server.terminate()
            server.wait(timeout=10)
            log.close()


def report(label: str, before: int, hwm: int, sampled: int) -> None:
    """Print one row: KiB figures as MiB, growth = the higher peak minus the level before."""
    growth = max(hwm, sampled) - before
    print(f"{label:<34} {before / 1024:>8.1f} MiB {hwm / 1024:>7.1f} MiB {sampled / 1024:>9.1f} MiB "
          f"{growth / 1024:>+6.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
