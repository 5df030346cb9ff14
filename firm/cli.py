"""The ``firm`` command."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from firm.config import ConfigError, load_config
from firm.broker.endpoint import LiveRefused
from firm.kill_switch import KillSwitchError

DEFAULT_CONFIG = "configs/default.yaml"


def _overrides(args: argparse.Namespace) -> dict:
    out = {}
    if getattr(args, "batch", None) is not None:
        out["run.batch"] = args.batch
    if getattr(args, "seed", None) is not None:
        out["run.seed"] = args.seed
    if getattr(args, "feed", None) is not None:
        out["live.feed"] = args.feed
    if getattr(args, "sessions", None) is not None:
        out["live.sessions"] = args.sessions
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from firm.pipeline import run

    cfg = load_config(args.config, _overrides(args))
    cfg, broker = _broker_setup(cfg, args)
    if cfg.live.feed == "ib":
        from firm.live import run_live

        print(
            f"firm: live on IB daily bars of {', '.join(cfg.data.symbols)}; agents: "
            f"{', '.join(sorted(cfg.enabled_agents()))}; seed {cfg.run.seed}, {broker}; "
            + (f"{cfg.live.sessions} session(s)" if cfg.live.sessions else "until Ctrl-C"),
            file=sys.stderr,
            flush=True,
        )
        result = run_live(cfg, config_name=Path(args.config).stem, address=args.address, progress=not args.quiet)
        print(result.stats.render() if result.stats.rows else "firm: no live session was traded")
        return 0
    print(
        f"firm: replaying {', '.join(cfg.data.symbols)} {cfg.data.start}..{cfg.data.end} from the "
        f"{cfg.data.source} data source; agents: {', '.join(sorted(cfg.enabled_agents()))}; "
        f"batch {cfg.run.batch}, seed {cfg.run.seed}, {broker}",
        file=sys.stderr,
        flush=True,
    )
    result = run(cfg, config_name=Path(args.config).stem, address=args.address, progress=not args.quiet)
    print(result.stats.render())
    return 0


def _broker_setup(cfg, args: argparse.Namespace):
    """The run's broker from --broker / --live / the config. IB: paper unless --live and a confirmation
    (typed LIVE on a terminal, or FIRM_CONFIRM_LIVE=yes); otherwise a refusal (exit 2). Returns the config
    to run and a line describing the broker, with the account masked."""
    from firm.broker.endpoint import confirm_live, endpoint, resolve_kind

    kind = resolve_kind(getattr(args, "broker", None), getattr(args, "live", False), cfg.broker.kind)
    if kind == "sim":
        return cfg, "simulated broker"
    ib = cfg.broker.ib
    if getattr(args, "replay_control", None):
        ib = ib.model_copy(update={"replay_control": args.replay_control})
    ep = endpoint(ib, kind)
    how = ""
    if kind == "ib-live":
        how = f", live trading confirmed ({confirm_live(ep, isatty=sys.stdin.isatty(), ask=input)})"
    # IB fills at the market's prices with IB's commissions: no modelled slippage in the projected book
    broker = cfg.broker.model_copy(update={"kind": kind, "ib": ib, "slippage_bps": 0.0, "slippage_noise_bps": 0.0})
    return cfg.model_copy(update={"broker": broker}), f"Interactive Brokers {ep}{how}"


def cmd_check(args: argparse.Namespace) -> int:
    from firm.data.market import load_market_data

    cfg = load_config(args.config)
    print(f"{args.config}: config is valid")
    data = load_market_data(cfg.data)
    bad = [q for q in data.quarantined if q.reason != "missing_session"]
    missing = [q for q in data.quarantined if q.reason == "missing_session"]
    print(
        f"data: {len(data.panel.symbols)} instruments, {len(data.panel.ts):,} sessions, {data.n_bars:,} valid bars, "
        f"{len(bad):,} quarantined, {len(missing):,} sessions missing"
    )
    for q in [*bad, *missing][:20]:
        print(f"  {q.symbol} {q.date} {q.reason}: {q.detail}")
    return 0


def walk_forward_dir(cfg, config_path: str | Path) -> Path:
    """Where ``firm walk-forward`` writes by default: <run.output_dir>/walk_forward/<config name> (no timestamp:
    a rerun of the same config overwrites its report)."""
    return Path(cfg.run.output_dir) / "walk_forward" / Path(config_path).stem


def cmd_walk_forward(args: argparse.Namespace) -> int:
    import time

    from firm.data.market import load_market_data
    from strategies.walk_forward_report import AGENTS, validate

    cfg = load_config(args.config)
    if args.test_window < 1:
        raise ConfigError(f"--test-window = {args.test_window}: must be >= 1")
    if args.agents:
        names = [a.strip() for a in args.agents.split(",") if a.strip()]
        unknown = [a for a in names if a not in AGENTS]
        if unknown:
            raise ConfigError(
                f"--agents: no walk-forward validator for {', '.join(unknown)}; validated agents: {', '.join(AGENTS)}"
            )
    else:
        names = [a for a in AGENTS if a in cfg.enabled_agents()]
        if not names:
            raise ConfigError(f"{args.config}: none of the validated agents ({', '.join(AGENTS)}) is enabled; use --agents")
    # each agent's params from the config (enabled or not), its defaults where the config does not list it
    agents = {a: (cfg.agents[a].params if a in cfg.agents else None) for a in names}
    out = Path(args.out) if args.out else walk_forward_dir(cfg, args.config)
    data = load_market_data(cfg.data)
    panel = data.panel
    print(
        f"firm: walk-forward validation of {', '.join(names)} on {', '.join(panel.symbols)} "
        f"{cfg.data.start}..{cfg.data.end} ({len(panel.ts):,} sessions); test blocks of {args.test_window} rows "
        "for the rolling-window agents",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"  {line}", file=sys.stderr, flush=True)

    report = validate(panel, agents, test_window=args.test_window, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / "walk_forward.json").write_text(report.to_json())
    (out / "walk_forward.md").write_text(report.to_markdown())
    print(report.table())
    print(
        f"\n{sum(len(v.windows) for v in report.validations):,} windows in {time.perf_counter() - t0:.1f} s. "
        "IS: the fit scored on its training rows; OOS: the same frozen fit on the test rows that follow.\n"
        f"report: {out / 'walk_forward.json'}, {out / 'walk_forward.md'}"
    )
    return 0


def cmd_kill_switch(args: argparse.Namespace) -> int:
    from firm import kill_switch

    cfg = load_config(args.config)
    path = cfg.kill_switch_path()
    if args.action == "status":
        state = kill_switch.load(path)
        print(f"kill switch: {state.describe()}")
        print(f"state file:  {path}{'' if path.exists() else ' (absent: never engaged)'}")
        return 0
    if not args.reason or not args.reason.strip():
        raise ConfigError(f"kill-switch {args.action}: --reason is required (it goes to the audit log)")
    if args.action == "engage":
        state = kill_switch.engage(path, args.reason.strip(), trigger="manual", flatten=False)
        print(f"kill switch: {state.describe()}")
        print(f"runs with {args.config} now send no order that increases risk until 'firm kill-switch reset'")
    else:
        before, state = kill_switch.reset(path, args.reason.strip())
        was = before.describe() if before.engaged else "was not engaged"
        print(f"kill switch: reset by {state.by} at {state.at}: {state.reason} ({was})")
    print(f"state file:  {path}; audit log: {kill_switch.audit_log(path)}")
    return 0


def latest_run_dir(output_dir: str | Path) -> Path | None:
    """The most recent finished run under ``output_dir``: the directory whose summary.json is newest."""
    base = Path(output_dir)
    runs = [p.parent for p in base.glob("*/summary.json")] if base.is_dir() else []
    return max(runs, key=lambda d: ((d / "summary.json").stat().st_mtime, d.name)) if runs else None


def _stress_portfolio(args: argparse.Namespace, cfg):
    """The book to stress, the data sources that value it, and a name for the report directory."""
    import json

    from firm.data.source import make_source
    from risk import stress

    if args.portfolio and args.run_dir:
        raise ConfigError("stress: give --portfolio or --run-dir, not both")
    if args.portfolio:
        positions, cash, as_of = stress.read_portfolio_file(args.portfolio)
        as_of = as_of or (str(cfg.data.end) if cfg.data.end else None)
        sources = [make_source(cfg.data)]
        history = stress.load_history([p[0] for p in positions], sources)
        as_of = as_of or str(history.proxy.index[-1].date())
        pf = stress.build_portfolio(positions, cash, as_of, history, f"file {args.portfolio}")
        return pf, history, Path(args.portfolio).stem
    run_dir = Path(args.run_dir) if args.run_dir else latest_run_dir(cfg.run.output_dir)
    if run_dir is None:
        raise ConfigError(
            f"stress: no finished run under {cfg.run.output_dir}/ (no */summary.json) to take the current book from; "
            "give --portfolio FILE (.csv with a header symbol,quantity or symbol,value; or .json) or --run-dir DIR, "
            "or run 'firm run' first"
        )
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise ConfigError(f"stress: --run-dir {run_dir}: no summary.json (is it a finished 'firm run' directory?)")
    summary = json.loads(summary_path.read_text())
    run_cfg = load_config(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else cfg
    as_of = str(summary["period"][1])
    positions = [(p["symbol"], "quantity", float(p["position"])) for p in summary["positions"] if p["position"]]
    if not positions:
        raise ConfigError(f"stress: the final book of {run_dir} is flat (no open position): nothing to stress")
    history = stress.load_history([p[0] for p in positions], [make_source(run_cfg.data)])
    pf = stress.build_portfolio(positions, 0.0, as_of, history, f"final book of run {run_dir}")
    cash = float(summary["final_equity"]) - pf.net
    pf = stress.build_portfolio(positions, cash, as_of, history, f"final book of run {run_dir}")
    return pf, history, run_dir.name


def cmd_stress(args: argparse.Namespace) -> int:
    import json
    import time

    from risk import stress

    if args.submit is not None:
        return _submit_stress(args)
    cfg = load_config(args.config)
    try:
        scenarios = stress.select(args.scenarios)
    except KeyError as err:
        raise ConfigError(f"--scenarios: {err.args[0]}") from None
    try:
        pf, history, name = _stress_portfolio(args, cfg)
        jobs = [stress.prepare(s, pf, history) for s in scenarios]
    except stress.PortfolioError as err:
        raise ConfigError(f"stress: {err}") from None
    except ValueError as err:
        raise ConfigError(f"stress: {err}") from None
    print(
        f"firm: stress tests of the {pf.origin} ({len(pf.symbols)} positions, equity {pf.equity:,.0f}, "
        f"valued {pf.as_of}): {', '.join(s.name for s in scenarios)}",
        file=sys.stderr,
        flush=True,
    )
    if args.local:
        t0 = time.perf_counter()
        results = stress.run_local(jobs)
        execution = {"mode": "local", "reason": "--local"}
    else:
        from firm.pipeline import start_ray
        from actors import stress as stress_tasks

        start_ray(cfg, args.address)
        t0 = time.perf_counter()
        results, plan = stress_tasks.run(jobs, mode="auto")
        execution = plan.as_dict()
        execution["cluster"] = _cluster_of_driver()
        _record_var(results, Path(args.config).stem, name)
    execution["seconds"] = round(time.perf_counter() - t0, 3)
    report = stress.report_dict(pf, results, execution)
    out = Path(args.out) if args.out else Path(cfg.run.output_dir) / "stress" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "stress.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    (out / "stress.md").write_text(stress.markdown(report))
    print(stress.table(results))
    print(
        f"\nequity {pf.equity:,.0f} ({pf.equity_basis}); P&L at the window's end (historical), of the shock, or "
        f"minus the stressed 1-day 99% VaR; max DD: worst peak-to-trough along the path.\n"
        f"ran: {execution['mode']} ({execution.get('reason', '')}) in {execution['seconds']:.2f} s\n"
        f"report: {out / 'stress.json'}, {out / 'stress.md'}"
    )
    if args.report_stdout:
        from firm.jobs import report_block

        print(report_block(report), flush=True)
    return 0


def _cluster_of_driver() -> dict:
    """The Ray cluster this process is connected to: GCS address, live nodes and CPUs (for the report)."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    return {"address": ray.get_runtime_context().gcs_address, "nodes": len(alive),
            "cpus": int(sum(n.get("Resources", {}).get("CPU", 0) for n in alive))}


def _submit_stress(args: argparse.Namespace) -> int:
    """``firm stress --submit``: the same stress test as a Ray job on the cluster behind the Jobs API; streams
    its logs, writes the report it sends back under --out, exit 1 if the job failed."""
    import json

    import ray.exceptions

    from firm import jobs
    from risk import stress

    forwarded = ["--config", args.config]
    for flag, value in (("--portfolio", args.portfolio), ("--run-dir", args.run_dir), ("--scenarios", args.scenarios)):
        if value:
            forwarded += [flag, value]
    if args.local:
        forwarded.append("--local")
    address = jobs.jobs_address(args.submit or None)
    print(f"firm: submitting `{jobs.stress_entrypoint(forwarded, args.python)}` to the Ray Jobs API at {address}",
          file=sys.stderr, flush=True)
    in_report = False

    def show(line: str) -> None:
        nonlocal in_report
        if line == jobs.REPORT_BEGIN or line == jobs.REPORT_END:
            in_report = line == jobs.REPORT_BEGIN
        elif not in_report:
            print(line, flush=True)

    try:
        job = jobs.run_stress_job(forwarded, address, python=args.python, on_log=show)
    except (ConnectionError, ray.exceptions.AuthenticationError) as err:
        raise ConfigError(f"stress --submit: Ray Jobs API at {address}: {err}") from None
    except TimeoutError as err:
        print(f"firm: {err}; it goes on (ray job logs / ray job stop)", file=sys.stderr)
        return 1
    if job.report is not None:
        try:
            output_dir = load_config(args.config).run.output_dir
        except ConfigError:  # the config is the head's path; it need not exist here
            output_dir = "runs"
        out = Path(args.out) if args.out else Path(output_dir) / "stress" / f"job-{job.job_id}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "stress.json").write_text(json.dumps(job.report, indent=2, sort_keys=True, default=str) + "\n")
        (out / "stress.md").write_text(stress.markdown(job.report))
        print(f"firm: Ray job {job.job_id} {job.status}; report: {out / 'stress.json'}, {out / 'stress.md'}")
    if not job.succeeded:
        print(f"firm: Ray job {job.job_id} {job.status}: {job.message.splitlines()[0] if job.message else ''}",
              file=sys.stderr)
        return 1
    return 0


def _record_var(results, config_name: str, book: str) -> None:
    """firm_var_dollars on Ray's metrics port: the book's 1-day 99% delta-normal VaR, unstressed and per VaR
    scenario (the only VaR firm computes; a run does not)."""
    from firm.metrics import record_var

    var = {r.name: r.details["var_stressed"] for r in results if "var_stressed" in r.details}
    unstressed = [r.details["var_unstressed"] for r in results if "var_unstressed" in r.details]
    if unstressed:
        record_var(config_name, book, {"unstressed": unstressed[0], **var})


def cmd_status(args: argparse.Namespace) -> int:
    from firm.status import ClusterUnreachable, collect, render, resolve_address

    cfg = load_config(args.config)
    namespace = args.namespace or cfg.ray.namespace
    address = resolve_address(args.address, cfg.ray.address)
    try:
        status = collect(address, namespace, all_instances=args.all)
    except ClusterUnreachable as err:
        print(f"firm: {err}", file=sys.stderr)
        return 2
    if args.json:
        import dataclasses
        import json

        print(json.dumps(dataclasses.asdict(status), indent=2, sort_keys=True))
    else:
        print(render(status))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Remove the finished (or abandoned) CIO a run left on the cluster; a running one is refused."""
    import os

    import ray

    from firm.pipeline import replace_finished_cio
    from firm.status import ClusterUnreachable, bootstrap_address, resolve_address

    cfg = load_config(args.config)
    try:
        gcs = bootstrap_address(resolve_address(args.address, cfg.ray.address))
        ray.init(address=gcs, namespace=cfg.ray.namespace, logging_level="WARNING", log_to_driver=False)
    except (ClusterUnreachable, ConnectionError) as err:
        print(f"firm: stop: {err}", file=sys.stderr)
        return 2
    try:
        try:
            st = ray.get(ray.get_actor(cfg.cio.name).status.remote(), timeout=30)
        except ValueError:
            print(f"no CIO named {cfg.cio.name!r} in namespace {cfg.ray.namespace!r}: nothing to stop")
            return 0
        except Exception as err:  # a CIO that cannot say what it is doing is not running a run of ours
            st = {"state": f"unreadable ({type(err).__name__})", "config": "?", "run_dir": "?"}
        try:
            replace_finished_cio(cfg.cio.name, cfg.ray.namespace)
        except RuntimeError as err:
            print(f"firm: stop refused: {err}", file=sys.stderr)
            return 2
        print(f"removed the {st['state']} CIO {cfg.cio.name!r} of run {st.get('run_dir')} (config {st.get('config')!r})")
        return 0
    finally:
        ray.shutdown()


def parse_positions(text: str | None) -> dict[str, float]:
    """``AAPL=100,MSFT=-50`` -> {"AAPL": 100.0, "MSFT": -50.0} (ibsim --positions)."""
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        symbol, _, qty = item.partition("=")
        try:
            shares = float(qty)
        except ValueError:
            shares = math.nan
        if not symbol.strip() or not math.isfinite(shares) or shares != int(shares):
            raise ConfigError(f"--positions: {item.strip()!r} is not SYMBOL=SHARES (whole shares, negative for short)")
        out[symbol.strip().upper()] = shares
    return out


def cmd_ibsim(args: argparse.Namespace) -> int:
    import asyncio
    import datetime as dt

    from firm.broker.ibsim import IBSim, IBSimConfig, load_replay

    cfg = load_config(args.config)
    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip()) if args.symbols else cfg.data.symbols
    start = args.start or (str(cfg.data.start) if cfg.data.start else None)
    if args.bar_interval < 0:
        raise ConfigError(f"--bar-interval = {args.bar_interval}: must be >= 0")
    if args.fill_share is not None and not 0 < args.fill_share <= 1:
        raise ConfigError(f"--fill-share = {args.fill_share}: must be in (0, 1]")
    positions = parse_positions(args.positions)
    try:
        data = load_replay(tuple(dict.fromkeys([*symbols, *positions])), cfg.data)
        sim = IBSim(
            data,
            start,
            IBSimConfig(account=args.account, cash=args.cash, next_valid_id=args.next_valid_id, fill_share=args.fill_share,
                        positions=positions),  # fmt: skip
        )
    except (KeyError, ValueError) as err:
        raise ConfigError(f"ibsim: {err}") from None

    def say(line: str) -> None:
        print(f"{dt.datetime.now():%H:%M:%S} {line}", flush=True)

    sim.on_log = say

    async def serve() -> None:
        try:
            await sim.start(args.host, args.port)
        except OSError as err:
            raise ConfigError(f"ibsim: cannot listen on {args.host}:{args.port}: {err}") from None
        control = None
        if args.control_port is not None:
            from firm.broker.ibreplay import serve_control

            try:
                control = await serve_control(sim, args.host, args.control_port)
            except OSError as err:
                raise ConfigError(f"ibsim: cannot listen on {args.host}:{args.control_port}: {err}") from None
            port = control.sockets[0].getsockname()[1]
            say(f"replay clock on {args.host}:{port}: firm run --broker ib-paper --replay-control {args.host}:{port}")
        say(
            f"replaying {', '.join(sim.symbols)} from {sim.date} ({len(sim.dates) - sim.bar - 1:,} sessions ahead), "
            + (f"the account holding {', '.join(f'{s} {q:+,g}' for s, q in positions.items())}, " if positions else "")
            + (f"one bar every {args.bar_interval:g} s" if args.bar_interval else "clock stopped (--bar-interval 0)")
            + f"; connect with IB().connect('{args.host}', {sim.port}, clientId=1). Ctrl-C stops."
        )
        try:
            while True:
                if not args.bar_interval:
                    await asyncio.Event().wait()
                await asyncio.sleep(args.bar_interval)
                if not sim.step():
                    say(f"end of the data at {sim.date}: the clock stops, the gateway keeps serving")
                    args.bar_interval = 0
                    continue
                working = sum(o.working for o in sim.orders.values())
                say(f"bar {sim.date}: {len(sim.sessions)} client(s), {working} working order(s), positions "
                    + (", ".join(f"{sim.symbols[s]} {q:g}" for s, (q, _) in sorted(sim.positions.items())) or "none"))
        finally:
            if control is not None:
                control.close()
            await sim.stop()

    print(
        f"firm: fake IB gateway (TWS API server version 178) for account {args.account} on {args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        say("stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firm",
        description="A multi-agent trading system on Ray: signal agents advise, one CIO decides, "
        "every decision goes risk -> compliance -> execution.",
        epilog="examples:\n"
        "  firm run                               replay the embedded default (real daily data, simulated broker)\n"
        "  firm run --batch 1 --seed 3            bar by bar, another seed for the slippage noise\n"
        "  firm run --address 10.0.0.5:6379       the same on a running Ray cluster\n"
        "  firm run --broker ib-paper             the same through Interactive Brokers (paper, 127.0.0.1:4002)\n"
        "  firm check --config configs/my.yaml    validate a config and its data\n"
        "  firm walk-forward --agents regime      in-sample vs out-of-sample scores of a fitted agent\n"
        "  firm kill-switch status                is the kill switch engaged, by whom, why\n"
        "  firm stress --portfolio book.csv       historical and hypothetical stress scenarios of a book\n"
        "  firm ibsim --start 2012-01-03          a fake IB gateway on 127.0.0.1:4002 replaying real bars\n"
        "  firm status --address 10.0.0.5:6379    firm's actors (alive, restarting, dead) and the nodes\n"
        "Each run writes journal.jsonl, orders.wal.jsonl, quarantine.jsonl, equity.csv and summary.json\n"
        "to its run directory under run.output_dir (printed at the end).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="replay market data through the whole pipeline against the simulated broker",
        description="Replay the configured market data through signal agents -> CIO -> risk -> compliance -> "
        "execution on Ray, write the journal, order log and quarantine to a run directory, print a summary.",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    p.add_argument("--address", default=None, help="Ray cluster to join (host:port or 'auto'); default: RAY_ADDRESS or a local Ray")
    p.add_argument("--batch", type=int, default=None, help="bars handed to each agent per call (replay; live uses 1)")
    p.add_argument("--seed", type=int, default=None, help="seed for every random draw (slippage noise)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--broker", choices=("sim", "ib-paper", "ib-live"), default=None,
        help="sim (default: broker.kind), or Interactive Brokers: ib-paper (port 4002) or ib-live (4001, needs --live)",
    )  # fmt: skip
    p.add_argument(
        "--live", action="store_true",
        help="allow live trading (ib-live): also needs LIVE typed on a terminal or FIRM_CONFIRM_LIVE=yes",
    )  # fmt: skip
    p.add_argument("--replay-control", default=None, help="HOST:PORT of a fake gateway's replay clock (rehearsals)")
    p.add_argument(
        "--feed", choices=("replay", "ib"), default=None,
        help="replay: the config's data (default: live.feed); ib: trade live on IB's daily bars (warm-up from "
        "reqHistoricalData, then each session after its close)",
    )  # fmt: skip
    p.add_argument("--sessions", type=int, default=None, help="with --feed ib: stop after N live sessions (default: Ctrl-C)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "check",
        help="validate a config and its market data without trading",
        description="Validate the config, load and validate the market data, report quarantined bars.",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "walk-forward",
        help="validate the agents with fitted parameters: in-sample vs out-of-sample, window by window",
        description="Walk-forward validation (strategies/walk_forward_report.py): each fitted model (GARCH, HMM, "
        "AR(1) half-life, hedge ratios) is fitted on rolling training windows and scored on its training rows "
        "(in-sample) and, frozen, on the test rows that follow (out-of-sample); prints a summary per agent, "
        "instrument and metric and writes walk_forward.json and walk_forward.md. No Ray, no trading.",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    p.add_argument(
        "--agents",
        default=None,
        help="comma-separated agents (options_vol, regime, mean_reversion, stat_arb, index_spread); "
        "default: those enabled in the config",
    )
    p.add_argument(
        "--out", default=None, help="output directory (default: <run.output_dir>/walk_forward/<config name>)"
    )
    p.add_argument(
        "--test-window",
        type=int,
        default=21,
        help="test rows per window for the rolling-window agents (mean_reversion, stat_arb, index_spread); "
        "options_vol and regime use their refit_every (default: 21)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_walk_forward)

    p = sub.add_parser(
        "kill-switch",
        help="show, engage or reset the kill switch (persisted across runs)",
        description="The kill switch stops every order that increases risk, cancels working orders and, when "
        "tripped by the flatten drawdown tier, closes every position. It stays engaged across runs until reset "
        "here. State: risk.kill_switch.state_file (default <run.output_dir>/state/kill_switch.json); every "
        "engage and reset is appended to kill_switch.log.jsonl beside it.",
    )
    p.add_argument("action", choices=("status", "engage", "reset"))
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    p.add_argument("--reason", default=None, help="why (required for engage and reset; recorded with who and when)")
    p.set_defaults(func=cmd_kill_switch)

    p = sub.add_parser(
        "stress",
        help="stress-test a book: historical scenarios from the shipped data and hypothetical shocks",
        description="Replay the historical scenarios (dot-com 2000-02, Lehman 2008-09, flash crash 2010, US "
        "downgrade 2011, February 2018 volatility spike) on the book's instruments, with an S&P 500 beta proxy "
        "where an instrument has no data, and the hypothetical shocks (equities -20% x beta, volatility x2, "
        "correlations to 1) on risk/stress.py's rules, as Ray tasks; prints a table and writes stress.json and "
        "stress.md. The book: --portfolio, --run-dir, or by default the final book of the latest run under "
        "run.output_dir.",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    p.add_argument(
        "--portfolio",
        default=None,
        help="a .csv (header symbol,quantity or symbol,value; a CASH row of dollars) or .json "
        '({"as_of", "cash", "positions": [{"symbol", "quantity"|"value"}]}); quantities are valued at the close '
        "of as_of (default data.end)",
    )
    p.add_argument("--run-dir", default=None, help="take the final book of this finished run (its summary.json)")
    p.add_argument(
        "--scenarios", default=None, help="comma-separated scenario names, or worst_<N>d scans (default: all eight)"
    )
    p.add_argument("--address", default=None, help="Ray cluster to join (host:port or 'auto'); default: RAY_ADDRESS or a local Ray")
    p.add_argument("--local", action="store_true", help="evaluate in this process, without Ray")
    p.add_argument("--out", default=None, help="output directory (default: <run.output_dir>/stress/<book name>)")
    p.add_argument(
        "--submit", nargs="?", const="", default=None, metavar="JOBS_API",
        help="run it as a Ray job on a cluster through its Jobs API (default: RAY_API_SERVER_ADDRESS or "
        "http://127.0.0.1:8265, the dashboard forwarded by `ray dashboard cluster.yaml`); --config, "
        "--portfolio and --run-dir are paths on the head; the report comes back under --out "
        "(default <run.output_dir>/stress/job-<id>)",
    )
    p.add_argument("--python", default=None, help="with --submit: the interpreter on the head that runs firm "
                   "(default: the `firm` on the head's PATH, the venv the cluster's start commands activate)")
    p.add_argument("--report-stdout", action="store_true",
                   help="also print the JSON report on stdout between two marker lines (how a Ray job sends it back)")
    p.set_defaults(func=cmd_stress)

    p = sub.add_parser(
        "ibsim",
        help="run a fake IB gateway (TWS API) that fills orders on replayed real bars: rehearse the IB path with no account",
        description="A fake IB gateway speaking the TWS API at server version 178 (what ib_async 2.1 speaks): "
        "managed accounts, positions, open and completed orders, account updates, executions with commissions, "
        "daily historical bars with IB's pacing. Orders (MKT, LMT, STP) fill against the configured data, one "
        "bar every --bar-interval seconds, at IB's fixed commission. Ctrl-C stops it.",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config whose data section is replayed (default: {DEFAULT_CONFIG})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=4002, help="port (default: 4002, IB Gateway's paper port; 0: any free port)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: data.symbols of the config)")
    p.add_argument("--start", default=None, help="session the replay clock starts at, YYYY-MM-DD (default: data.start)")
    p.add_argument("--bar-interval", type=float, default=10.0, help="seconds of wall clock per bar (default: 10; 0: the clock stays)")
    p.add_argument("--account", default="DU1234567", help="the paper account reported (default: DU1234567)")
    p.add_argument("--cash", type=float, default=1_000_000.0, help="starting cash (default: 1,000,000)")
    p.add_argument("--next-valid-id", type=int, default=1, help="the first nextValidId (default: 1)")
    p.add_argument(
        "--positions", default=None,
        help="positions the account starts with, e.g. AAPL=100,MSFT=-50 (held at the start session's close; "
        "a symbol not in --symbols is added to the replay)",
    )
    p.add_argument("--fill-share", type=float, default=None, help="fill at most this share of a bar's volume per bar (partial fills)")
    p.add_argument(
        "--control-port", type=int, default=None,
        help="also serve the replay clock on this port (0: any free port) so that `firm run --broker ib-paper "
        "--replay-control HOST:PORT` keeps the fake's market in step with the run; use with --bar-interval 0",
    )
    p.set_defaults(func=cmd_ibsim)

    p = sub.add_parser(
        "status",
        help="health of firm's actors (alive, restarting, dead) and the cluster's nodes",
        description="List every firm actor in firm's namespace (agents, CIO, risk, compliance, execution, the bars "
        "archive) with its state, node, restarts and pid, and the cluster's nodes with their resources, from Ray's "
        "state API. Exit code 2 if no cluster is reachable.",
    )
    p.add_argument("--address", default=None, help="Ray cluster (host:port or 'auto'); default: ray.address, RAY_ADDRESS, 'auto'")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config whose ray.namespace is listed (default: {DEFAULT_CONFIG})")
    p.add_argument("--namespace", default=None, help="Ray namespace to list (default: ray.namespace of the config)")
    p.add_argument("--all", action="store_true", help="every instance Ray remembers, also dead ones of earlier runs")
    p.add_argument("--json", action="store_true", help="print the nodes and actors as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "stop",
        help="remove the finished CIO a run left on the cluster (a running run is refused)",
        description="After a run on a cluster its CIO stays, finished, so that notebooks can attach to it "
        "(firm.attach); the next run replaces it. This removes it now. A CIO whose run is still going is left "
        "alone (exit 2); one whose driver died is removed.",
    )
    p.add_argument("--address", default=None, help="Ray cluster (host:port or 'auto'); default: ray.address, RAY_ADDRESS, 'auto'")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config whose ray.namespace and cio.name are used (default: {DEFAULT_CONFIG})")
    p.set_defaults(func=cmd_stop)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"firm: {err}", file=sys.stderr)
        return 2
    except KillSwitchError as err:
        print(f"firm: {err}", file=sys.stderr)
        return 3
    except LiveRefused as err:
        print(f"firm: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
