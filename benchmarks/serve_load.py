"""1,000 concurrent streamed chat completions through `lionflow serve`, and through LiteLLM proxy.

    .venv/bin/python benchmarks/serve_load.py [--requests 1000] [--deltas 200] [--skip-litellm] [--json]

One run starts, each in its own process on 127.0.0.1:

- an upstream (benchmarks/_serve_upstream.py): a cheap OpenAI Chat Completions server that answers
  every streamed request with N text deltas, a finish chunk, the usage chunk when
  ``stream_options.include_usage`` asks for it, and ``data: [DONE]``;
- `lionflow serve --config` with one model, ``m``, the openai provider pointed at the upstream;
- LiteLLM proxy (`litellm --config`, one worker, no master key, no database) with ``m`` pointed at
  the same upstream. It is installed with ``pip install 'litellm[proxy]'`` into a throwaway venv,
  benchmarks/.cache/litellm-venv, never into the project's: the first run takes minutes for it
  (PyPI must be reachable), later runs reuse it. Delete the folder to reinstall;
  ``--skip-litellm`` measures lionflow alone.

Against each server in turn, a load client in its own process (benchmarks/_serve_client.py) sends a
few warm-up requests, then all the requests at once, one connection each, ``stream: true`` with
``include_usage``, and reads every event. Measured, per server:

- completed: requests that got every delta, the exact text, and ``data: [DONE]``, with no error;
- server CPU: user + system seconds of the server's process tree (/proc) over the load, per 1,000
  deltas relayed;
- peak memory: the tree's resident memory, sampled every 50 ms during the load (VmHWM would count
  start-up);
- time to first byte (TTFB): from the start of a request's connection to its first event, p50/p99;
- gap: the longest wait between two events of one stream, p99 over the streams;
- wall: from the first request sent to the last stream ended.

Target: lionflow completes every stream with no error and uses less CPU per delta than LiteLLM proxy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _serve_procs import Child, RssSampler, cpu_seconds, free_port

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
LITELLM_VENV = HERE / ".cache" / "litellm-venv"
UPSTREAM_KEY_VARIABLE = "SERVE_LOAD_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-serve-load-dummy"  # the upstream takes any key; only the children see it


def say(message: str) -> None:
    print(f"[{message}]", file=sys.stderr, flush=True)


def _env(**extra: str) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "LITELLM_MASTER_KEY")
    }
    return env | {UPSTREAM_KEY_VARIABLE: UPSTREAM_KEY} | extra


def _upstream_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as response:
        stats: dict[str, int] = json.load(response)
        return stats


def start_lionflow(upstream: str, folder: Path) -> tuple[Child, str]:
    config = folder / "lionflow.toml"
    config.write_text(
        '[server]\nhost = "127.0.0.1"\nport = 0\n\n'
        '[[models]]\nname = "m"\nprovider = "openai"\nmodel = "gpt-4o-mini"\n'
        f'base_url = "{upstream}/v1"\napi_key_env = "{UPSTREAM_KEY_VARIABLE}"\n'
    )
    command = [sys.executable, "-m", "lionflow", "serve", "--config", str(config)]
    child = Child("lionflow serve", command, cwd=ROOT, env=_env())
    try:
        match = child.wait_for_line(r"lionflow serving on (http://\S+/v1)", timeout=120)
    except RuntimeError:
        child.stop()
        raise
    return child, match.group(1)


def install_litellm() -> Path:
    """The `litellm` command of the cached venv, installed first if need be."""
    litellm = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / ".serve-load-installed"
    if litellm.exists() and marker.exists():
        return litellm
    say(f"installing litellm[proxy] into {LITELLM_VENV.relative_to(ROOT)} (once; minutes)")
    LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
    python = LITELLM_VENV / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(LITELLM_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "litellm[proxy]"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            log = [line for line in (done.stdout + done.stderr).splitlines() if "is ignored" not in line]
            raise RuntimeError(f"{' '.join(step[-2:])} failed:\n" + "\n".join(log[-15:]))
    marker.touch()
    return litellm


def start_litellm(upstream: str, folder: Path) -> tuple[Child, str]:
    litellm = install_litellm()
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
        f"      api_base: {upstream}/v1\n      api_key: os.environ/{UPSTREAM_KEY_VARIABLE}\n"
    )
    port = free_port()
    command = [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    env = _env(
        # Like lionflow here: no key for clients, no database. LiteLLM refuses that unless told.
        LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the price list from GitHub at start-up
        LITELLM_LOG="ERROR",
    )
    child = Child("litellm proxy", command, cwd=folder, env=env)  # cwd: no stray .env is read
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health/liveliness", timeout=5):
                return child, url + "/v1"
        except OSError:
            if child.process.poll() is not None or time.monotonic() > deadline:
                child.stop()
                raise RuntimeError(f"LiteLLM proxy did not come up:\n{child.tail()}") from None
            time.sleep(0.5)


def run_client(url: str, *, requests: int, deltas: int, request_timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "_serve_client.py"), url, "--requests", str(requests)]
    command += ["--deltas", str(deltas), "--timeout", str(request_timeout)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=request_timeout + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def measure(child: Child, url: str, upstream: str, args: argparse.Namespace) -> dict[str, Any]:
    warm = run_client(url, requests=args.warmup, deltas=args.deltas, request_timeout=60)
    warm_failed = [r["error"] for r in warm["requests"] if not r["completed"]]
    if warm_failed:
        say(f"{child.name}: warm-up requests failed: {warm_failed[:2]}")
    before = _upstream_stats(upstream)
    cpu_before = cpu_seconds(child.pid)
    with RssSampler(child.pid) as sampler:
        idle_rss = sampler.peak  # before the first request of the load
        report = run_client(url, requests=args.requests, deltas=args.deltas, request_timeout=args.timeout)
    cpu = cpu_seconds(child.pid) - cpu_before
    time.sleep(0.5)  # let the upstream see the last closes
    after = _upstream_stats(upstream)
    results = report["requests"]
    relayed = sum(r["deltas"] for r in results)
    errors = [r["error"] for r in results if r["error"]]
    return {
        "requests": len(results),
        "completed": sum(r["completed"] for r in results),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:3],
        "with_usage": sum(r["usage"] for r in results),
        "deltas_relayed": relayed,
        "cpu_s": cpu,
        "cpu_s_per_1k_deltas": cpu / relayed * 1000 if relayed else None,
        "idle_rss_mib": idle_rss / 2**20,
        "peak_rss_mib": sampler.peak / 2**20,
        "ttfb_p50_s": percentile([r["first_event"] for r in results if r["first_event"] is not None], 0.5),
        "ttfb_p99_s": percentile([r["first_event"] for r in results if r["first_event"] is not None], 0.99),
        "gap_p99_s": percentile([r["max_gap"] for r in results if r["events"] > 1], 0.99),
        "wall_s": report["wall"],
        "open_at_once": report["open_peak"],
        "upstream_streams": after["streams"] - before["streams"],
        "upstream_closed_early": after["closed_early"] - before["closed_early"],
    }


ROWS = [
    ("requests completed", "completed", "{:,}"),
    ("errors", "errors", "{:,}"),
    ("deltas relayed", "deltas_relayed", "{:,}"),
    ("usage chunk received", "with_usage", "{:,}"),
    ("streams open at once (max)", "open_at_once", "{:,}"),
    ("server CPU s", "cpu_s", "{:.2f}"),
    ("server CPU s / 1,000 deltas", "cpu_s_per_1k_deltas", "{:.4f}"),
    ("peak RSS MiB (idle before)", "peak_rss_mib", "{:.0f}"),
    ("TTFB p50 s", "ttfb_p50_s", "{:.3f}"),
    ("TTFB p99 s", "ttfb_p99_s", "{:.3f}"),
    ("max gap between events p99 s", "gap_p99_s", "{:.3f}"),
    ("wall s", "wall_s", "{:.2f}"),
    ("upstream streams / closed early", "upstream_streams", "{:,}"),
]


def _cell(figures: dict[str, Any] | str, key: str, form: str) -> str:
    if isinstance(figures, str):
        return "-"
    value = figures.get(key)
    text = "n/a" if value is None else form.format(value)
    if key == "peak_rss_mib":
        text += f" ({figures['idle_rss_mib']:.0f})"
    elif key == "upstream_streams":
        text += f" / {figures['upstream_closed_early']:,}"
    return text


def verdict(results: dict[str, dict[str, Any] | str], requests: int) -> str:
    lion = results.get("lionflow")
    if not isinstance(lion, dict):
        return f"target NOT met: lionflow did not run ({lion})"
    complete = lion["completed"] == requests and lion["errors"] == 0
    first = "every stream completed with no error" if complete else "NOT every stream completed"
    lite = results.get("litellm")
    if not isinstance(lite, dict) or lite["cpu_s_per_1k_deltas"] is None:
        return f"lionflow: {first}; the CPU comparison needs LiteLLM ({lite or 'skipped'})"
    ratio = lion["cpu_s_per_1k_deltas"] / lite["cpu_s_per_1k_deltas"]
    cheaper = ratio < 1
    held = "target MET" if complete and cheaper else "target NOT met"
    return f"{held}: lionflow: {first}; its CPU per delta is {ratio:.2f}x LiteLLM proxy's"


def print_table(results: dict[str, dict[str, Any] | str], args: argparse.Namespace) -> None:
    cpus = os.cpu_count()
    print(f"{args.requests:,} concurrent streamed requests x {args.deltas} deltas, loopback, {cpus} CPUs")
    names = {"lionflow": "lionflow serve", "litellm": "LiteLLM proxy"}
    print(f"{'':<34}" + "".join(f"{names[name]:>22}" for name in results))
    for label, key, form in ROWS:
        print(f"{label:<34}" + "".join(f"{_cell(figures, key, form):>22}" for figures in results.values()))
    for name, figures in results.items():
        if isinstance(figures, str):
            print(f"{names[name]}: not measured: {figures}")
        elif figures["error_samples"]:
            print(f"{names[name]} errors, e.g.: " + " | ".join(figures["error_samples"]))
    print(verdict(results, args.requests))


def main(args: argparse.Namespace) -> None:
    # 1,000 client sockets, and as many again between the server and the upstream.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 65_536 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    if limit < 3 * args.requests + 100:
        say(f"open file limit {limit} may be too low for {args.requests} requests")
    servers = {"lionflow": start_lionflow} | ({} if args.skip_litellm else {"litellm": start_litellm})
    results: dict[str, dict[str, Any] | str] = {}
    command = [sys.executable, str(HERE / "_serve_upstream.py"), "--deltas", str(args.deltas)]
    with tempfile.TemporaryDirectory() as folder:
        upstream = Child("upstream", command, cwd=ROOT, env=_env())
        try:
            upstream_url = upstream.wait_for_line(r"^(http://\S+)$", timeout=30).group(1)
            for name, start in servers.items():
                child = None
                try:
                    say(f"starting {name}")
                    child, url = start(upstream_url, Path(folder))
                    say(f"{name} at {url}: {args.warmup} warm-up requests, then {args.requests} at once")
                    results[name] = measure(child, url, upstream_url, args)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    say(f"{name} not measured: {exc}")
                    results[name] = str(exc).splitlines()[0]
                finally:
                    if child is not None:
                        child.stop()
        finally:
            upstream.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="concurrent streamed requests")
    parser.add_argument("--deltas", type=int, default=200, help="text deltas in every upstream stream")
    parser.add_argument("--warmup", type=int, default=5, help="requests before the measured load")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    parser.add_argument("--skip-litellm", action="store_true", help="measure lionflow only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    main(parser.parse_args())
