"""Command line: ``python -m bench run [--smoke] [--targets ...] [--out FILE]``; also
``profile`` (py-spy under load), ``ab`` (fixed-rate A/B of checkouts) and ``report``.

Runs the workloads (see ``bench.workloads``) against each target (see
``bench.targets``), writes the markdown report and a JSON record, and exits 0
if every target either ran or was skipped with a reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import report, runner, targets

MAX_PARTICIPANTS = 15_000  # a hard bound on connections (each side needs a socket apiece)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="peerroom benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the workloads and write the report")
    run.add_argument(
        "--targets",
        default=",".join(targets.ALL_TARGETS),
        help=f"comma-separated subset of {','.join(targets.ALL_TARGETS)}",
    )
    run.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    run.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    run.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    run.add_argument("--levels", default=None, help="capacity levels, e.g. 1000,5000,10000")
    run.add_argument("--join-storm", type=int, default=None)
    run.add_argument("--step-seconds", type=float, default=None)
    run.add_argument("--fanout-max", type=float, default=None, help="deliveries/s cap")
    run.add_argument("--no-pin", action="store_true", help="do not pin server and generator")
    run.add_argument(
        "--nice",
        type=int,
        default=None,
        help="niceness (and autogroup niceness) of the generator and servers; "
        "default -10 for a full run (needs root; ignored otherwise), 0 for --smoke",
    )
    run.add_argument("--note", default="", help="a note printed at the top of the report")
    prof = sub.add_parser(
        "profile", help="py-spy every server process under a steady fan-out or a join storm"
    )
    prof.add_argument("--workload", choices=["fanout", "join"], default="fanout")
    prof.add_argument("--joins", type=int, default=1_000, help="join storm size (--workload join)")
    prof.add_argument(
        "--after-load",
        action="store_true",
        help="--workload join: chat at --rate for --seconds and a hand storm before the storm",
    )
    prof.add_argument("--target", default="peerroom", choices=list(targets.ALL_TARGETS))
    prof.add_argument("--participants", type=int, default=10_000)
    prof.add_argument("--rate", type=float, default=10_000.0, help="deliveries/s offered")
    prof.add_argument("--seconds", type=float, default=15.0)
    prof.add_argument(
        "--out", type=Path, default=Path("bench/.profiles"), help="raw py-spy stacks go here"
    )
    prof.add_argument("--top", type=int, default=25)
    ab = sub.add_parser(
        "ab", help="fixed-rate fan-out steps against peerroom checkouts, in turn (A/B)"
    )
    ab.add_argument("--target", default="peerroom", choices=list(targets.ALL_TARGETS))
    ab.add_argument(
        "--source",
        dest="sources",
        type=Path,
        action="append",
        help="a peerroom checkout; give it once per side (default: this one)",
    )
    ab.add_argument("--rates", default="8000", help="deliveries/s offered, comma-separated")
    ab.add_argument("--seconds", type=float, default=8.0, help="per step")
    ab.add_argument("--repeats", type=int, default=2)
    ab.add_argument("--participants", type=int, default=10_000)
    ab.add_argument("--nodes", type=int, default=None, help="run a Redis target as this many")
    ab.add_argument(
        "--whole-rooms", action="store_true", help="all of a room's members on one node"
    )
    ab.add_argument("--no-pin", action="store_true", help="do not pin server and generator")
    ab.add_argument(
        "--workload",
        choices=["fanout", "join"],
        default="fanout",
        help="fixed-rate fan-out steps, or one join storm per start",
    )
    ab.add_argument("--joins", type=int, default=1_000, help="join storm size (--workload join)")
    ab.add_argument(
        "--after-load",
        action="store_true",
        help="--workload join: before the storm, chat at each of --rates and a hand storm, "
        "as a full run does",
    )
    ab.add_argument(
        "--quiet",
        type=float,
        default=0.0,
        help="--workload join: seconds the idle server is left alone before the storm "
        "(a lull before a session opens)",
    )
    rep = sub.add_parser("report", help="render a report again from a JSON record")
    rep.add_argument("--from", dest="source", type=Path, required=True)
    rep.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    rep.add_argument("--note", default="", help="a note printed at the top of the report")
    run.add_argument(
        "--peerroom-src",
        type=Path,
        default=None,
        help="run peerroom from this checkout instead of this one (e.g. another branch)",
    )
    return p.parse_args(argv)


def _profile(args: argparse.Namespace) -> int:
    import uvloop

    from bench import profile

    if not 10 <= args.participants <= MAX_PARTICIPANTS:
        print(f"participants must be 10..{MAX_PARTICIPANTS:,}", file=sys.stderr)
        return 2
    if args.after_load and args.workload != "join":
        print("--after-load is for --workload join", file=sys.stderr)
        return 2
    a = profile.ProfileArgs(
        args.target,
        args.participants,
        args.rate,
        args.seconds,
        args.out,
        args.top,
        args.workload,
        args.joins,
        after_load=args.after_load,
    )
    return uvloop.run(profile.run(a))


def _ab(args: argparse.Namespace) -> int:
    import uvloop

    from bench import ab

    if not 10 <= args.participants <= MAX_PARTICIPANTS:
        print(f"participants must be 10..{MAX_PARTICIPANTS:,}", file=sys.stderr)
        return 2
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0 or not 0 < args.seconds <= 60 or not 1 <= args.repeats <= 10:
        print("--rates must be positive numbers, --seconds 0..60, --repeats 1..10", file=sys.stderr)
        return 2
    if args.nodes is not None and not 1 <= args.nodes <= 4:
        print("--nodes must be 1..4", file=sys.stderr)
        return 2
    if args.joins < 10 or args.participants + args.joins > MAX_PARTICIPANTS:
        print(
            f"--joins must be at least 10, and with --participants at most {MAX_PARTICIPANTS:,}",
            file=sys.stderr,
        )
        return 2
    if (args.after_load or args.quiet) and args.workload != "join":
        print("--after-load and --quiet are for --workload join", file=sys.stderr)
        return 2
    if not 0 <= args.quiet <= 60:
        print("--quiet must be 0..60 seconds", file=sys.stderr)
        return 2
    sources = [s.resolve() for s in (args.sources or [targets.ROOT])]
    a = ab.AbArgs(
        args.target,
        sources,
        rates,
        args.seconds,
        args.repeats,
        args.participants,
        args.nodes,
        args.whole_rooms,
        workload=args.workload,
        joins=args.joins,
        after_load=args.after_load,
        quiet=args.quiet,
    )
    if args.no_pin:
        a.server_core = a.gen_core = None
    return uvloop.run(ab.run(a))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.cmd == "report":
        results, cfg, info, wall = report.load_json(args.source)
        args.out.write_text(report.render(results, cfg, info, args.note, wall))
        print(f"wrote {args.out} from {args.source}", file=sys.stderr)
        return 0
    if args.cmd == "profile":
        return _profile(args)
    if args.cmd == "ab":
        return _ab(args)
    keys = [k.strip() for k in args.targets.split(",") if k.strip()]
    unknown = [k for k in keys if k not in targets.ALL_TARGETS]
    if unknown:
        print(f"unknown targets: {unknown}", file=sys.stderr)
        return 2
    cfg = runner.Config.smoke(keys) if args.smoke else runner.Config.full(keys)
    if args.levels:
        cfg.levels = [int(x) for x in args.levels.split(",")]
    if args.join_storm is not None:
        cfg.join_storm = args.join_storm
    if args.step_seconds is not None:
        cfg.step_seconds = args.step_seconds
    if args.fanout_max is not None:
        cfg.fanout_max = args.fanout_max
    total = max(cfg.levels) + cfg.join_storm
    if total > MAX_PARTICIPANTS or min(cfg.levels) < cfg.room_size:
        print(
            f"participants must be {cfg.room_size}..{MAX_PARTICIPANTS:,} in all (asked {total:,})",
            file=sys.stderr,
        )
        return 2
    if args.peerroom_src is not None:
        cfg.peerroom_src = str(args.peerroom_src.resolve())
    if args.nice is not None:
        cfg.nice = args.nice
    if args.no_pin:
        cfg.server_core = cfg.gen_core = None
    info = report.machine_info()
    info["peerroom source"] = report.source_info(cfg.peerroom_src)
    t0 = time.monotonic()
    import signal

    import uvloop

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every finally: servers are stopped

    signal.signal(signal.SIGTERM, _on_term)
    try:
        results = uvloop.run(runner.run_all(cfg))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    wall = round(time.monotonic() - t0, 1)  # as the JSON keeps it, so a re-render matches
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.render(results, cfg, info, args.note, wall))
    json_path = args.json or Path("bench/results") / f"run-{time.strftime('%Y%m%dT%H%M%S')}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.to_json(results, cfg, info, wall))
    print(f"wrote {args.out} and {json_path} in {wall:.0f} s", file=sys.stderr)
    bad = [r for r in results if r.status.startswith(("error", "partial"))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
