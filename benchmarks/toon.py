"""TOON: lionflow's codec against the Python TOON packages, JSON, and its own incremental decoder.

    .venv/bin/python benchmarks/toon.py [--rows 10000] [--repeat 5] [--skip-peers]

Measured in one run (best of --repeat, milliseconds):

- encode and decode of (a) a table of --rows rows x 5 fields, and (b) a nested document of similar
  size (orders with nested customers, tag lists, item tables, some list-form items), for lionflow
  (`toon.encode`/`toon.decode` as a user calls them, which use `toons` when the `lionflow[toon]` extra
  is installed, and the pure-Python paths alone), `toon-format` 1.2.0, `toons`, `python-toon`, and
  `json` (compact). Every decoder reads the same text, lionflow's encoding. The peers are installed
  into a throwaway venv, benchmarks/.cache/toon-venv (git-ignored), and timed in a subprocess of that
  venv; one that does not install shows n/a and why. The issue's target: lionflow at least 3x faster
  than toon-format on both encode and decode.
- `toon.PartialTOON` fed the TOON text of (a) and (b) in pieces of 1 to 4 characters, reading `.value`
  after every piece, at 100 KB and 1 MB: time per MB should stay flat (linear growth).
- characters of TOON against compact JSON for the seed's `{"employees": [...]}` and for (a).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lionflow import toon
from lionflow.toon import _decode, _encode

HERE = Path(__file__).resolve().parent
VENV = HERE / ".cache" / "toon-venv"
PEERS = {"toon-format": "toon-format==1.2.0", "toons": "toons==0.9.0", "python-toon": "python-toon==0.2.0"}

# Run by the peers' venv python: argv = data file (JSON: name -> [value, lionflow's TOON text]), repeat.
PEER_SCRIPT = r"""
import json, sys, time
data = json.load(open(sys.argv[1]))
repeat = int(sys.argv[2])
codecs = {}
try:
    import toon_format
    codecs["toon-format"] = (toon_format.encode, toon_format.decode)
except Exception as exc:
    codecs["toon-format"] = repr(exc)
try:
    import toons
    codecs["toons"] = (toons.dumps, toons.loads)
except Exception as exc:
    codecs["toons"] = repr(exc)
try:
    import toon
    codecs["python-toon"] = (toon.encode, toon.decode)
except Exception as exc:
    codecs["python-toon"] = repr(exc)
def best(call, arg):
    times = []
    for _ in range(repeat):
        start = time.perf_counter(); call(arg); times.append(time.perf_counter() - start)
    return min(times) * 1000
out = {}
for name, codec in codecs.items():
    if isinstance(codec, str):
        out[name] = {"error": codec}
        continue
    encode, decode = codec
    out[name] = {}
    for case, (value, text) in data.items():
        row = {}
        for op, call, arg in (("encode", encode, value), ("decode", decode, text)):
            try:
                row[op] = best(call, arg)
            except Exception as exc:
                row[op] = "error: " + type(exc).__name__
        out[name][case] = row
print(json.dumps(out))
"""


def tabular(rows: int) -> dict[str, Any]:
    """(a): `rows` employees x 5 primitive fields."""
    rng = random.Random(1)
    first = ["Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis"]
    departments = ["Engineering", "Sales", "Marketing", "Support", "Finance"]
    return {
        "employees": [
            {
                "id": index,
                "name": f"{rng.choice(first)} {rng.choice(first)}son",
                "department": rng.choice(departments),
                "salary": round(rng.uniform(40_000, 180_000), 2),
                "active": rng.random() > 0.2,
            }
            for index in range(rows)
        ]
    }


def nested(orders: int) -> dict[str, Any]:
    """(b): orders with a nested customer, a tag list, an item table (a list when an item has a gift)."""
    rng = random.Random(2)
    cities = ["Berlin", "Oslo", "Lisbon", "New York, NY", "Tokyo"]
    result = []
    for index in range(orders):
        items: list[dict[str, Any]] = [
            {
                "sku": f"SKU-{rng.randrange(10_000)}",
                "qty": rng.randrange(1, 5),
                "price": round(rng.uniform(1, 300), 2),
            }
            for _ in range(rng.randrange(1, 4))
        ]
        if index % 3 == 0:
            items[0]["gift"] = {"wrap": True, "note": "Happy birthday: enjoy!"}
        customer = {
            "name": f"Customer {index}",
            "email": f"c{index}@example.com",
            "address": {"city": rng.choice(cities), "zip": f"{rng.randrange(100_000):05d}"},
        }
        result.append(
            {
                "id": index,
                "status": rng.choice(["open", "shipped", "returned"]),
                "customer": customer,
                "tags": rng.sample(["new", "vip", "promo", "bulk", "gift"], rng.randrange(0, 3)),
                "items": items,
                "total": round(sum(item["qty"] * item["price"] for item in items), 2),
                "note": None if index % 2 else "leave at door",
            }
        )
    return {"orders": result, "meta": {"generated": "2026-07-22", "count": orders}}


def seed_employees() -> dict[str, Any]:
    """The seed's `data = {"employees": [...]}`, made concrete: a small staff table."""
    staff = [
        ("Alice Johnson", "Engineering", "Staff Engineer", 185_000, "2017-03-14"),
        ("Bob Smith", "Sales", "Account Executive", 98_000, "2020-08-01"),
        ("Carol White", "Engineering", "Engineering Manager", 172_000, "2015-11-30"),
        ("David Brown", "Marketing", "Content Lead", 91_500, "2021-01-18"),
        ("Eve Davis", "Finance", "Controller", 143_250, "2016-06-06"),
        ("Frank Miller", "Support", "Support Specialist", 61_000, "2022-09-12"),
        ("Grace Lee", "Engineering", "Senior Engineer", 158_000, "2019-04-22"),
        ("Henry Wilson", "Sales", "Sales Director", 167_400, "2014-02-03"),
    ]
    return {
        "employees": [
            {
                "id": index + 1,
                "name": name,
                "department": dept,
                "title": title,
                "salary": salary,
                "hired": hired,
            }
            for index, (name, dept, title, salary, hired) in enumerate(staff)
        ]
    }


def best_ms(call: Callable[[Any], object], argument: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call(argument)
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def install_peers() -> dict[str, str]:
    """Install each peer into the cached venv; returns package -> why it is missing."""
    python = VENV / "bin" / "python"
    missing: dict[str, str] = {}
    if not python.exists():
        VENV.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            return dict.fromkeys(PEERS, f"venv failed: {made.stderr.strip()[-200:]}")
    for name, requirement in PEERS.items():
        marker = VENV / f".installed-{name}"
        if marker.exists():
            continue
        print(f"installing {requirement} into {VENV.relative_to(HERE.parent)} (once)", file=sys.stderr)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode == 0:
            marker.touch()
        else:
            lines = (done.stdout + done.stderr).strip().splitlines()
            missing[name] = f"pip install failed: {lines[-1] if lines else done.returncode}"
    return missing


def run_peers(cases: dict[str, tuple[Any, str]], repeat: int) -> dict[str, Any]:
    missing = install_peers()
    results: dict[str, Any] = {name: {"error": why} for name, why in missing.items()}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "cases.json"
        data.write_text(json.dumps({case: [value, text] for case, (value, text) in cases.items()}))
        command = [str(VENV / "bin" / "python"), "-c", PEER_SCRIPT, str(data), str(repeat)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        why = f"peer run failed: {done.stderr.strip()[-200:]}"
        return {name: {"error": why} for name in PEERS}
    measured = json.loads(done.stdout)
    for name, row in measured.items():
        results.setdefault(name, row)
    return results


def partial_ms_per_mb(text: str, rng: random.Random) -> tuple[float, float]:
    """Seconds to feed `text` to PartialTOON in 1-4 character pieces (reading `.value` after each)."""
    pieces = []
    index = 0
    while index < len(text):
        step = rng.randint(1, 4)
        pieces.append(text[index : index + step])
        index += step
    start = time.perf_counter()
    partial = toon.PartialTOON(indent=2)
    for piece in pieces:
        partial.feed(piece)
        partial.value  # noqa: B018 - reading the value is what a streaming consumer does
    partial.close()
    seconds = time.perf_counter() - start
    return seconds, seconds * 1000 / (len(text.encode()) / 1_000_000)


def sized(make: Callable[[int], dict[str, Any]], size: int) -> str:
    """The TOON text of `make(n)` with n grown until the text reaches `size` characters."""
    count = 16
    while True:
        text = toon.encode(make(count))
        if len(text) >= size:
            return text
        count = max(count + 1, int(count * size / len(text)) + 1)


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return "n/a" if value is None else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-peers", action="store_true", help="lionflow and json only")
    args = parser.parse_args()

    table = tabular(args.rows)
    document = nested(max(1, args.rows // 10))
    cases = {"(a) tabular": (table, toon.encode(table)), "(b) nested": (document, toon.encode(document))}
    for name, (value, text) in cases.items():
        print(f"{name}: {len(text):,} TOON characters")
        assert toon.decode(text) == value, name

    def encode_pure(value: Any) -> str:
        return _encode._encode(value, 2, ",", compiled=False)

    ours: dict[str, tuple[Callable[[Any], object], Callable[[str], object]]] = {
        "lionflow": (toon.encode, toon.decode),
        "lionflow (pure Python)": (encode_pure, _decode._decode_pure),
        "json (compact)": (lambda value: json.dumps(value, separators=(",", ":")), json.loads),
    }
    rows: dict[str, dict[str, object]] = {}
    for name, (encode, decode) in ours.items():
        for case, (value, text) in cases.items():
            source = json.dumps(value, separators=(",", ":")) if name.startswith("json") else text
            rows.setdefault(name, {})[f"{case} encode"] = best_ms(encode, value, args.repeat)
            rows[name][f"{case} decode"] = best_ms(decode, source, args.repeat)
    notes: list[str] = []
    if not args.skip_peers:
        for name, result in run_peers(cases, args.repeat).items():
            if "error" in result:
                rows[name] = {}
                notes.append(f"{name}: n/a ({result['error']})")
                continue
            for case, timing in result.items():
                for op, ms in timing.items():
                    rows.setdefault(name, {})[f"{case} {op}"] = ms if isinstance(ms, float) else None
                    if not isinstance(ms, float):
                        notes.append(f"{name} {case} {op}: {ms}")

    columns = [f"{case} {op}" for case in cases for op in ("encode", "decode")]
    width = max(len(name) for name in rows) + 2
    print(f"\nwhole documents, best of {args.repeat}, ms")
    print("package".ljust(width) + "".join(column.rjust(20) for column in columns))
    for name, row in rows.items():
        print(name.ljust(width) + "".join(cell(row.get(column)).rjust(20) for column in columns))
    reference = rows.get("toon-format")
    if reference:
        print("lionflow speed-up over toon-format".ljust(width), end="")
        for column in columns:
            ratio = (reference.get(column) or 0) / rows["lionflow"][column]  # type: ignore[operator]
            print(f"{ratio:.1f}x".rjust(20), end="")
        print()
    for note in notes:
        print("  " + note)

    print("\nPartialTOON, pieces of 1-4 characters, .value read after each")
    print("document".ljust(16) + "size".rjust(12) + "seconds".rjust(12) + "ms per MB".rjust(12))
    rng = random.Random(3)
    for label, make in (("(a) tabular", tabular), ("(b) nested", nested)):
        for size in (100_000, 1_000_000):
            text = sized(make, size)
            seconds, per_mb = partial_ms_per_mb(text, rng)
            print(
                label.ljust(16)
                + f"{len(text):,}".rjust(12)
                + f"{seconds:.2f}".rjust(12)
                + f"{per_mb:.0f}".rjust(12)
            )

    print("\ncharacters, TOON (indent 2, comma) vs compact JSON")
    for label, value in (("seed employees", seed_employees()), ("(a) tabular", table)):
        text, compact = toon.encode(value), json.dumps(value, separators=(",", ":"))
        share = len(text) / len(compact)
        print(f"{label.ljust(16)}{len(text):>12,} TOON{len(compact):>12,} JSON  ({share:.0%} of JSON)")


if __name__ == "__main__":
    main()
