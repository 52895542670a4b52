"""The commands docs/EXAMPLES.md gives for trying each example offline: start its stand-in with its faults
from the command line (``python examples/servers/….py``), run the example against it, change the stand-in
by hand (``POST /_control/…``). Everything here is a real subprocess, started as the docs say."""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from ex_support import DIP_SYNC, GH_YEAR_END, ROOT, Program, python

EXAMPLES = ROOT / "examples"


@contextmanager
def stand_in(module: str, *flags: str) -> Iterator[str]:
    """``python examples/servers/<module>.py --port 0 …`` running; yields the URL it prints."""
    server = Program([sys.executable, str(EXAMPLES / "servers" / f"{module}.py"), "--port", "0", *flags])
    try:
        server.wait_for("serving on ", stream="stdout")
        found = re.search(r"serving on (\S+)", server.stdout)
        assert found is not None
        yield found.group(1)
    finally:
        server.proc.send_signal(signal.SIGINT)
        assert server.finish(timeout=30) == 0, server.stderr


def run(args: list[str | Path], cwd: Path) -> Program:
    program = Program(python(*args), cwd=cwd)
    program.finish(timeout=120)
    return program


def test_github_stand_in_with_blocked_repositories_and_a_rate_limit(tmp_path: Path) -> None:
    with stand_in("github_server", "--repos", "3", "--rate-limit", "6", "--reset-after", "1",
                  "--blocked", "acme/repo-01:pulls:404", "--blocked", "acme/repo-02:*:451") as url:
        done = run([GH_YEAR_END, "--org", "acme", "--year", "2025", "--token", "ghp-test-token", "--base-url", url,
                    "--per-page", "30", "--no-progress"], tmp_path)
    assert done.proc.returncode == 0, done.stderr
    assert "rate limited" in done.stderr
    manifest = json.loads((tmp_path / "data/raw/year=2025/source=github/target=acme/manifest.json").read_text())
    assert {(f["repo"], f["endpoint"]) for f in manifest["failures"]} == {
        ("acme/repo-01", "pulls"), ("acme/repo-02", "pulls"), ("acme/repo-02", "issues")}


def test_dip_stand_in_with_rate_limits(tmp_path: Path) -> None:
    with stand_in("dip_server", "--count", "300", "--rate-limit-rate", "0.3", "--retry-after", "0") as url:
        done = run([DIP_SYNC, "sync-drucksachen", "--api-key", "dip-test-key", "--base-url", url, "--no-progress"],
                   tmp_path)
    assert done.proc.returncode == 0, done.stderr
    assert "429" in done.stderr and "300 document(s) written" in done.stderr


def test_odata_stand_in_with_malformed_records_and_a_failing_entity(tmp_path: Path) -> None:
    with stand_in("odata_server", "--count", "60", "--malform", "Zaak:2", "--fail-entity", "Agendapunt:404") as url:
        done = run([EXAMPLES / "tk_loader.py", "--base-url", url, "--no-progress"], tmp_path)
    assert done.proc.returncode == 0, done.stderr
    assert "load_zaken complete (58 ok, 2 failed)" in done.stderr
    assert "load_agendapunten failed" in done.stderr


def test_prices_stand_in_with_a_failing_symbol_and_new_listings(tmp_path: Path) -> None:
    with stand_in("prices_server", "--count", "20", "--fail", "AAAC:404") as url:
        done = run([EXAMPLES / "daily_stock_sync.py", "--base-url", url, "--date", "2026-11-20", "--no-progress"],
                   tmp_path)
        assert done.proc.returncode == 0, done.stderr
        listed = httpx.post(f"{url}/_control/list", params={"count": "3"}).json()["listed"]
        assert len(listed) == 3
        symbols = httpx.get(f"{url}/symbols").json()["symbols"]
        assert symbols[:3] == listed and len(symbols) == 23
    status = run([EXAMPLES / "daily_stock_sync.py", "--date", "2026-11-20", "--status"], tmp_path)
    assert "processed 20/20, successful 19, failed 1" in status.stdout, status.stdout


def test_bookmarks_stand_in_revoke_token_and_add_by_hand(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"alice": "token-alice", "bob": "token-bob"}))
    crawl = [EXAMPLES / "bookmarks_crawler.py", "--tokens", tokens, "--store", "json:.checkpoints",
             "--output-file", "bookmarks.jsonl", "--no-progress"]
    with stand_in("bookmarks_server", "--users", "alice,bob", "--count", "30", "--revoked", "bob") as url:
        first = run([*crawl, "--base-url", url], tmp_path)
        assert first.proc.returncode == 0, first.stderr
        assert "crawled alice: 30 new" in first.stdout and "bob failed" in first.stderr
        httpx.post(f"{url}/_control/token/bob", params={"token": "token-bob"}).raise_for_status()
        httpx.post(f"{url}/_control/add/alice", params={"count": "2"}).raise_for_status()
        httpx.post(f"{url}/_control/revoke/alice").raise_for_status()
        httpx.post(f"{url}/_control/token/alice", params={"token": "token-alice"}).raise_for_status()
        second = run([*crawl, "--base-url", url], tmp_path)
    assert second.proc.returncode == 0, second.stderr
    assert "crawled alice: 2 new" in second.stdout and "crawled bob: 30 new" in second.stdout
    assert len((tmp_path / "bookmarks.jsonl").read_text().splitlines()) == 62
