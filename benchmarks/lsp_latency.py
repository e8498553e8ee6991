"""Time `cardgen lsp` from a change to its diagnostics, per corpus card, once the server is warm.

    python benchmarks/lsp_latency.py [--rounds 10]

A real client (pytest-lsp's) starts the server process and talks to it over stdio, as an editor does;
each round sends the whole card as a change (with one more trailing space, so that every round is
a new text) and waits for the server's publishDiagnostics. Prints the median and worst per card.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from lsprotocol import types as lsp
from pytest_lsp.client import make_test_lsp_client

ROOT = Path(__file__).resolve().parent.parent


async def diagnostics_of(client, uri: str, version: int):
    """Wait for the diagnostics of this version of this document. Documents stay open (a close
    publishes too, and a notification that arrives between two waits would be missed)."""
    p = await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    assert p.uri == uri and p.version == version, (p.uri, p.version)


async def main(rounds: int) -> None:
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "cardgen.cli", "lsp")
    await client.initialize_session(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(),
                                                         root_uri=ROOT.as_uri()))
    worst_median = 0.0
    for path in sorted((ROOT / "cards").glob("*.card")):
        text, uri = path.read_text("utf-8"), path.as_uri()
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id="card", version=0, text=text)))
        await diagnostics_of(client, uri, 0)
        times = []
        for v in range(1, rounds + 1):
            start = time.perf_counter()
            client.text_document_did_change(lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=uri, version=v),
                [lsp.TextDocumentContentChangeWholeDocument(text=text + " " * v)]))
            await diagnostics_of(client, uri, v)
            times.append((time.perf_counter() - start) * 1000)
        med = statistics.median(times)
        worst_median = max(worst_median, med)
        print(f"{path.stem:28} median {med:6.1f} ms   worst {max(times):6.1f} ms")
    print(f"largest median: {worst_median:.1f} ms")
    await client.shutdown_session()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(ap.parse_args().rounds))
