"""Load test of `brain-pipeline serve` on loopback, against calling the CLI once per image.

Starts the service (CPU only) as its own process, then sends `--requests` requests from a
bounded client (`--concurrency` in flight): first one image each, then `--batch-images`
images each. Reports p50/p95/p99 latency and images per second for both, and the CLI's
images per second (`brain-pipeline predict --model M IMAGE`, one process per image). The
last line is one JSON object; its top-level latency and throughput are the single-image
phase's, `speedup_vs_cli` is that throughput over the CLI's.

    python benchmarks/serve.py                      # the champion of the artifacts root
    python benchmarks/serve.py --model artifacts/trained_model/<cfg>/<run>/model.keras
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {folder}")
    return files[:: max(1, len(files) // limit)][:limit]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(port: int, model: str | None, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "brain_pipeline.apps.cli", "serve", "--port", str(port)]
    command += ["--model", model] if model else []
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the service did not answer /health within 180 s")


async def _load(
    base: str, uploads: list[tuple[str, bytes]], requests: int, per_request: int, concurrency: int
) -> dict:
    """`requests` POST /predict of `per_request` images each, at most `concurrency` at once."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def one(number: int) -> None:
            nonlocal errors
            chosen = [
                uploads[(number * per_request + k) % len(uploads)] for k in range(per_request)
            ]
            files = [("files", (name, data, "image/jpeg")) for name, data in chosen]
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post("/predict", files=files)
                    ok = (
                        response.status_code == 200
                        and len(response.json()["results"]) == per_request
                    )
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(requests)))
        wall = time.perf_counter() - started
        health = (await client.get("/health")).json()
    ms = np.array(latencies) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "images_per_s": round(requests * per_request / wall, 1),
        "errors": errors,
        "wall_s": round(wall, 2),
        "batches_so_far": health["batches"],
        "largest_batch": health["largest_batch"],
    }


def _cli_images_per_s(model: str | None, images: list[Path], calls: int, env: dict) -> float:
    command = [sys.executable, "-m", "brain_pipeline.apps.cli", "predict"]
    command += ["--model", model] if model else []
    started = time.perf_counter()
    for image in images[:calls]:
        subprocess.run([*command, str(image)], env=env, check=True, capture_output=True)
    return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=".keras file (default: the champion)")
    parser.add_argument("--images", type=Path, help="image folder (default: the raw-data root)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-images", type=int, default=8)
    parser.add_argument("--cli-calls", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    folder = args.images or Path(os.environ.get("BRAIN_PIPELINE_DATA_DIR", "data"))
    images = _images(folder, 64)
    uploads = [(p.name, p.read_bytes()) for p in images]
    port = _free_port()
    server = _start_server(port, args.model, env)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_load(base, uploads, 20, 1, 4))  # warm-up: first calls trace the graph
        single = asyncio.run(_load(base, uploads, args.requests, 1, args.concurrency))
        batched = asyncio.run(
            _load(base, uploads, args.requests, args.batch_images, args.concurrency)
        )
        model_version = httpx.get(f"{base}/health").json()["model_version"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    cli = _cli_images_per_s(args.model, images, args.cli_calls, env)
    print(f"model {model_version}; {len(uploads)} distinct images from {folder}")
    print(f"{'':>22} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'images/s':>9} {'errors':>7}")
    for name, phase in (
        ("1 image/request", single),
        (f"{args.batch_images} images/request", batched),
    ):
        print(
            f"{name:>22} {phase['p50_ms']:>8} {phase['p95_ms']:>8} {phase['p99_ms']:>8} "
            f"{phase['images_per_s']:>9} {phase['errors']:>7}"
        )
    print(f"{'CLI, 1 process/image':>22} {'':>8} {'':>8} {'':>8} {cli:>9.2f}")
    summary = {
        **{k: single[k] for k in ("p50_ms", "p95_ms", "p99_ms", "images_per_s")},
        "errors": single["errors"] + batched["errors"],
        "speedup_vs_cli": round(single["images_per_s"] / cli, 1),
        "batched": {**batched, "speedup_vs_cli": round(batched["images_per_s"] / cli, 1)},
        "cli_images_per_s": round(cli, 3),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "model_version": model_version,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
