"""The load report's charts (`cargo xtask load`), drawn headless with matplotlib's Agg backend.

    report.py --history locust_stats_history.csv --resources resources.csv --out DIR

- ``requests_per_s.png``: requests/s and failures/s over the run, and p50/p95 latency, from Locust's stats
  history (one row a second; its "current" percentiles are over a sliding window of the last 10 s).
- ``resources.png``: the server's CPU (cores used; Locust's beside it, as both share the machine), its RSS,
  and the SQLite database (file and WAL) and the data directory (but its backups), from the xtask's
  once-a-second sampler.
"""

import argparse
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

MIB = 1024 * 1024
# Okabe-Ito, readable by colour-blind readers.
BLUE, ORANGE, GREEN, RED, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#999999"


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def history(path):
    rows = [r for r in csv.DictReader(open(path, newline="", encoding="utf-8")) if r["Name"] == "Aggregated"]
    if not rows:
        raise SystemExit(f"report.py: no Aggregated rows in {path}")
    start = int(rows[0]["Timestamp"])
    return {
        "t": [int(r["Timestamp"]) - start for r in rows],
        "rps": [number(r["Requests/s"]) or 0.0 for r in rows],
        "fps": [number(r["Failures/s"]) or 0.0 for r in rows],
        "p50": [number(r["50%"]) for r in rows],
        "p95": [number(r["95%"]) for r in rows],
        "users": [number(r["User Count"]) or 0 for r in rows],
    }


def requests_chart(h, out):
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5), constrained_layout=True)
    top.plot(h["t"], h["rps"], color=BLUE, label="requests/s")
    top.plot(h["t"], h["fps"], color=RED, label="failures/s")
    top.set_ylabel("per second")
    top.set_ylim(bottom=0)
    top.legend(loc="best")
    top.set_title("Throughput and latency (Locust, all endpoints)")
    top.grid(alpha=0.3)
    bottom.plot(h["t"], h["p50"], color=GREEN, label="p50")
    bottom.plot(h["t"], h["p95"], color=ORANGE, label="p95")
    bottom.set_ylabel("ms (last 10 s)")
    bottom.set_xlabel("seconds since the first request")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="best")
    bottom.grid(alpha=0.3)
    fig.savefig(os.path.join(out, "requests_per_s.png"), dpi=110)
    plt.close(fig)


def resources(path):
    rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    if not rows:
        raise SystemExit(f"report.py: no samples in {path}")
    return {key: [float(r[key]) for r in rows] for key in rows[0]}


def resources_chart(r, out):
    fig, (cpu, rss, disk) = plt.subplots(3, 1, sharex=True, figsize=(9, 7), constrained_layout=True)
    cpu.plot(r["t_s"], r["server_cpu_cores"], color=BLUE, label="plugwatch")
    cpu.plot(r["t_s"], r["locust_cpu_cores"], color=GREY, label="Locust")
    other = [max(0.0, m - a - b) for m, a, b in zip(r["machine_cpu_cores"], r["server_cpu_cores"], r["locust_cpu_cores"])]
    cpu.plot(r["t_s"], other, color=ORANGE, linestyle="--", label="every other process")
    cpu.set_ylabel("CPU (cores)")
    cpu.set_ylim(bottom=0)
    cpu.legend(loc="best")
    cpu.set_title("Server resources (once a second)")
    cpu.grid(alpha=0.3)
    rss.plot(r["t_s"], [v / MIB for v in r["server_rss_bytes"]], color=GREEN)
    rss.set_ylabel("RSS (MiB)")
    rss.set_ylim(bottom=0)
    rss.grid(alpha=0.3)
    db = [(a + b) / MIB for a, b in zip(r["db_bytes"], r["wal_bytes"])]
    disk.plot(r["t_s"], db, color=ORANGE, label="database (file and WAL)")
    disk.plot(r["t_s"], [v / MIB for v in r["wal_bytes"]], color=RED, label="of which the WAL")
    disk.plot(r["t_s"], [v / MIB for v in r["data_dir_bytes"]], color=GREY, label="data directory but backups/")
    disk.set_ylabel("MiB")
    disk.set_xlabel("seconds since the server was ready")
    disk.set_ylim(bottom=0)
    disk.legend(loc="best")
    disk.grid(alpha=0.3)
    fig.savefig(os.path.join(out, "resources.png"), dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", required=True)
    parser.add_argument("--resources", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    requests_chart(history(args.history), args.out)
    resources_chart(resources(args.resources), args.out)


if __name__ == "__main__":
    main()
