"""`fakelens scan`, `fakelens check`, and for reviewers `fakelens review` and `fakelens bank`: the command line
of fakelens-client."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from fakelens_client import DEFAULT_BATCH, DEFAULT_CONCURRENCY, RETRIES, Client, ServiceError, Unreachable, find_images

CSV_FIELDS = ["path", "verdict", "prob_fake", "decided_by", "reason", "models", "provenance", "scan_id", "match", "error"]


def done_paths(out: Path) -> set[str]:
    """Paths already recorded in `out`; a last line cut short by an interruption is dropped from the file."""
    if not out.exists():
        return set()
    if out.suffix == ".csv":
        with open(out, newline="") as f:
            return {row["path"] for row in csv.DictReader(f) if row.get("path")}
    done, good_bytes = set(), 0
    with open(out, "rb") as f:
        for line in f:
            try:
                done.add(json.loads(line)["path"])
            except (ValueError, KeyError):
                break
            good_bytes += len(line)
    with open(out, "r+b") as f:
        f.truncate(good_bytes)
    return done


class Writer:
    """Appends one record per file to .jsonl or .csv and flushes each, so an interruption loses nothing written."""

    def __init__(self, out: Path):
        self.csv = out.suffix == ".csv"
        new = not out.exists() or out.stat().st_size == 0
        self.file = open(out, "a", newline="" if self.csv else None)
        if self.csv:
            self.writer = csv.DictWriter(self.file, CSV_FIELDS)
            if new:
                self.writer.writeheader()

    def write(self, rec: dict) -> None:
        if self.csv:
            self.writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in rec.items()})
        else:
            self.file.write(json.dumps(rec) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def scan(args: argparse.Namespace, client: Client) -> int:
    files, skipped = find_images(args.paths)
    done = done_paths(args.out) if args.resume else set()
    if args.out.exists() and not args.resume and args.out.stat().st_size:
        sys.exit(f"fakelens: {args.out} exists; pass --resume to finish that scan, or choose another --out")
    todo = [p for p in files if str(p) not in done]
    print(f"{len(files)} images ({len(done & {str(p) for p in files})} already in {args.out}), "
          f"{skipped} other files skipped", file=sys.stderr)
    counts, start = Counter(), time.time()
    writer = Writer(args.out)
    try:
        with tqdm(total=len(todo), unit="img", dynamic_ncols=True) as bar:
            for rec in client.scan_files(todo, args.batch_size, args.concurrency):
                writer.write(rec)
                counts["error" if rec["error"] else rec["verdict"]] += 1
                bar.update()
    except Unreachable as exc:
        print(f"fakelens: service unreachable: {exc}", file=sys.stderr)
        return 2
    finally:
        writer.close()
    seconds = time.time() - start
    scanned = sum(counts.values())
    print(f"scanned {scanned} in {seconds:.1f} s ({scanned / max(seconds, 1e-9):.1f} images/s): "
          + ", ".join(f"{k} {counts[k]}" for k in ("REAL", "FAKE", "UNSURE", "error") if counts[k])
          + f"; {skipped} skipped; {client.retried} requests retried; results in {args.out}", file=sys.stderr)
    return 0 if scanned or (files and not todo) else 1


def check(args: argparse.Namespace, client: Client) -> int:
    answered = 0
    for path in args.files:
        try:
            result = client.predict(path)
        except ServiceError as exc:
            print(json.dumps({"path": path, "error": exc.body}) if args.json else f"{path}: error: {exc}")
            continue
        except OSError as exc:
            print(json.dumps({"path": path, "error": str(exc)}) if args.json else f"{path}: unreadable: {exc}")
            continue
        answered += 1
        if args.json:
            print(json.dumps({"path": path, **result}))
        elif result["verdict"] == "UNSURE":
            print(f"{path}: UNSURE - {result['reason']}")
        elif result["decided_by"] == "models":
            print(f"{path}: {result['verdict']} ({100 * result['confidence']:.1f}% confident)")
        else:  # the file's own provenance, or a person's review of an earlier copy: the reason says which
            print(f"{path}: {result['verdict']} - {result['reason']}")
    return 0 if answered else 1


def review(args: argparse.Namespace, client: Client) -> int:
    out = client.review(args.scan_id, args.label, args.note)
    print(f"scan {args.scan_id}: reviewed as {out['review']['label']}; copies of it now match "
          f"(bank {out['entry']['bank']}, entry {out['entry']['entry']})")
    return 0


def bank(args: argparse.Namespace, client: Client) -> int:
    if args.action == "export":
        text = client.export_bank(args.bank)
        if args.file is None:
            sys.stdout.write(text)
        else:
            args.file.write_text(text)
            print(f"{len(text.splitlines()) - 1} entries of bank {args.bank} in {args.file}", file=sys.stderr)
        return 0
    if args.file is None:
        sys.exit("fakelens: bank import needs the CSV file to send")
    out = client.import_bank(args.bank, args.file.read_bytes())
    print(f"bank {out['bank']}: {out['imported']} imported, {out['already_held']} already held")
    return 0


def main(argv: list[str] | None = None) -> None:
    service = argparse.ArgumentParser(add_help=False)
    service.add_argument("--url", default=os.environ.get("FAKELENS_URL", "http://127.0.0.1:8080"),
                         help="the service (default: $FAKELENS_URL or http://127.0.0.1:8080)")
    service.add_argument("--api-key", default=os.environ.get("FAKELENS_API_KEY"), help="default: $FAKELENS_API_KEY")
    service.add_argument("--retries", type=int, default=RETRIES,
                         help=f"after a 429/503 answer or a lost connection, with back-off (default {RETRIES}: "
                              "about 90 s before it gives up)")
    ap = argparse.ArgumentParser(prog="fakelens", description="Ask a fakelens service whether images are AI-generated.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scan", parents=[service], help="every image below folders, in batches, one record per file")
    s.add_argument("paths", nargs="+", type=Path)
    s.add_argument("--out", type=Path, required=True, help="results.jsonl or results.csv")
    s.add_argument("--resume", action="store_true", help="skip the files already in --out")
    s.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help=f"requests in flight (default {DEFAULT_CONCURRENCY})")
    s.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"images per request (default {DEFAULT_BATCH}; the service takes 32)")
    c = sub.add_parser("check", parents=[service], help="one line per file")
    c.add_argument("files", nargs="+")
    c.add_argument("--json", action="store_true", help="the service's full answer, one JSON line per file")
    r = sub.add_parser("review", parents=[service], help="label a scan (a reviewer's key): copies of it then match")
    r.add_argument("scan_id", help="the scan_id of a result")
    r.add_argument("label", choices=["REAL", "FAKE"])
    r.add_argument("--note", default="", help="why; shown with every match")
    b = sub.add_parser("bank", parents=[service], help="a bank of reviewed hashes as CSV (a reviewer's key)")
    b.add_argument("action", choices=["export", "import"])
    b.add_argument("bank", help="e.g. reviewed (where reviews go), or a shared list's name")
    b.add_argument("file", nargs="?", type=Path, help="import: the CSV to send; export: where to write (default stdout)")
    args = ap.parse_args(argv)
    if args.retries < 0:
        ap.error("--retries: 0 or more")
    client = Client(args.url, args.api_key, retries=args.retries)
    commands = {"scan": scan, "check": check, "review": review, "bank": bank}
    try:
        code = commands[args.command](args, client)
    except (ServiceError, OSError) as exc:  # scan and check record these per file; here the one request failed
        print(f"fakelens: {exc}", file=sys.stderr)
        code = 1
    except Unreachable as exc:
        print(f"fakelens: service unreachable: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same scan with --resume to finish it", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
