"""The team recipe (scripts/nginx-team.conf): Debian's nginx with basic authentication in front of the served
dashboard. Without credentials nothing of the dashboard is served; with them the page renders in Chromium
through the proxy (its WebSocket included), and the store's password never reaches the page."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT
from served import CHROMIUM_FLAGS, chromium_or_skip, free_port, serve

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_or_skip() -> str:
    if not Path(NGINX).exists():
        if os.environ.get("NORMSCOPE_REQUIRE_PROXY") == "1":
            raise RuntimeError("NORMSCOPE_REQUIRE_PROXY=1 but Debian's nginx is not installed")
        pytest.skip("Debian's nginx is not installed (apt-get install nginx-light)")
    return NGINX


def start_proxy(upstream: int, user: str, password: str) -> tuple[subprocess.Popen, int, Path]:
    """nginx from the shipped recipe, filled in as its header says, on a free port."""
    prefix = Path(tempfile.mkdtemp(prefix="normscope-nginx-"))
    prefix.chmod(0o755)  # nginx's workers read the password file
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", password], capture_output=True, text=True, check=True
    ).stdout.strip()
    (prefix / "htpasswd").write_text(f"{user}:{hashed}\n")
    (prefix / "htpasswd").chmod(0o644)
    port = free_port()
    conf = (ROOT / "scripts" / "nginx-team.conf").read_text()
    for key, value in {
        "@PREFIX@": str(prefix),
        "@LISTEN@": f"127.0.0.1:{port}",
        "@UPSTREAM@": str(upstream),
        "@HTPASSWD@": str(prefix / "htpasswd"),
        "@USER@": "user root;" if os.geteuid() == 0 else "",
    }.items():
        conf = conf.replace(key, value)
    (prefix / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(
        [nginx_or_skip(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        except urllib.error.HTTPError:
            break  # it answers (401): up
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                said = proc.stdout.read()[-2000:] if proc.stdout else ""
                raise AssertionError(f"nginx did not start: {said}") from None
            time.sleep(0.1)
    return proc, port, prefix


def test_the_dashboard_behind_nginx_asks_for_a_password_and_never_shows_the_store_s(tmp_path, pg_cluster):
    chromium = chromium_or_skip()
    nginx_or_skip()
    url = pg_cluster.create_database()
    from profilers.store import Store

    Store(url, migrate=True).close()
    assert ":" in url.split("@")[0].split("//")[1], "the test store's URL carries a password"
    secret = url.split("//")[1].split("@")[0].split(":", 1)[1]
    env = {"NORMSCOPE_REFERENCE_DIR": str(tmp_path / "none")}
    with serve(url, env=env) as base:
        upstream = int(base.rsplit(":", 1)[1])
        proc, port, prefix = start_proxy(upstream, "ana", "correct horse")
        try:
            front = f"http://127.0.0.1:{port}"
            for path in ("/", "/results", "/_stcore/health", "/_stcore/stream"):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(front + path, timeout=10)
                assert refused.value.code == 401, path
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
                wrong = b.new_page(http_credentials={"username": "ana", "password": "wrong"})
                assert wrong.goto(front + "/run").status == 401
                page = b.new_page(http_credentials={"username": "ana", "password": "correct horse"})
                page.goto(front + "/run")
                page.get_by_role("heading", name="New sweep").first.wait_for(timeout=90_000)  # over the WebSocket
                page.get_by_text("Store: postgresql://", exact=False).first.wait_for(timeout=30_000)
                assert secret not in page.content()
                b.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            shutil.rmtree(prefix, ignore_errors=True)
