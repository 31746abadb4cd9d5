"""Run every benchmark: lomond against its peers and two references, one command.

    python benchmarks/run.py                      # everything, 5 repetitions
    python benchmarks/run.py --quick              # smoke run: small counts, 2 repetitions
    python benchmarks/run.py --scenarios recv_text echo --libs lomond websockets floor
    python benchmarks/run.py --repeat 9 --json results.json

Peers missing from ``benchmarks/.peers`` are installed first (``setup_peers.py``).
One benchmark server (``server.py``) serves every run. Each measurement is a fresh
subprocess, ``python -S drivers/NAME_driver.py``, whose ``PYTHONPATH`` holds only
the measured library's directory (this checkout, for lomond), so no library can
shadow another. Within a repetition every scenario runs every library once, in an
order that rotates from one repetition to the next.

The report (Markdown, on stdout; progress goes to stderr) gives the median of each
library per scenario, in µs per message, MB/s, ms or MiB, and in seconds; the
ratios lomond ÷ best peer and lomond ÷ floor for each repetition (as speed-ups: above
1 means lomond is faster; for memory, lomond's peak divided by the other's, so below
1 means lomond uses less); and, for each target of issue 6, whether the median of
those per-repetition ratios meets it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

import server
import setup_peers

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
DRIVERS = BENCHMARKS / "drivers"
MiB = 1024 * 1024
RUN_TIMEOUT = 600.0

#: Checks a driver's ``describe()``; returns what is wrong, or ``None``.
Check = Callable[[Dict[str, object]], Optional[str]]


# -- libraries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Library:
    """Something measured: a library (through its driver) or a reference."""

    name: str
    driver: str
    #: ``"lomond"`` (what is being optimised), ``"variant"`` (of it), ``"peer"`` (what
    #: it is measured against) or ``"reference"`` (the ceiling and the floor).
    role: str
    #: Peer directories (names in :data:`setup_peers.PEERS`) on its ``PYTHONPATH``.
    peers: tuple[str, ...] = ()
    #: Whether this checkout goes on the ``PYTHONPATH`` (first).
    checkout: bool = False
    environment: tuple[tuple[str, str], ...] = ()
    #: Scenarios it takes part in (``None``: every one that fits its role).
    only: frozenset[str] | None = None
    #: Checks ``describe()``'s answer; returns what is wrong, or ``None``.
    check: Check = lambda described: None

    def python_path(self) -> list[str]:
        paths = [str(REPOSITORY)] if self.checkout else []
        paths += [str(setup_peers.library_path(peer)) for peer in self.peers]
        return paths


def _expect_checkout(described: dict[str, object]) -> str | None:
    expected = str(REPOSITORY / "lomond" / "__init__.py")
    if described.get("file") != expected:
        return f"imported lomond from {described.get('file')}, not from this checkout"
    return None


def _expect_pure_checkout(described: dict[str, object]) -> str | None:
    if described.get("speedups"):
        return "the C accelerator was loaded despite LOMOND_NO_EXTENSIONS=1"
    return _expect_checkout(described)


def _expect(key: str, value: object) -> Check:
    def check(described: dict[str, object]) -> str | None:
        if described.get(key) != value:
            return f"{key} is {described.get(key)!r}, expected {value!r}"
        return None

    return check


MASKING_SCENARIOS = frozenset({"send_text", "send_binary", "echo"})

LIBRARIES = [
    Library(
        "lomond",
        "lomond_driver.py",
        "lomond",
        peers=("lomond-deps",),
        checkout=True,
        check=_expect_checkout,
    ),
    # The pure-Python path of this checkout (an optional C accelerator switched off):
    # it matters where lomond masks, that is where it sends.
    Library(
        "lomond-pure",
        "lomond_driver.py",
        "variant",
        peers=("lomond-deps",),
        checkout=True,
        environment=(("LOMOND_NO_EXTENSIONS", "1"),),
        only=MASKING_SCENARIOS,
        check=_expect_pure_checkout,
    ),
    Library(
        "lomond-0.3.4",
        "lomond_driver.py",
        "peer",
        peers=("lomond-0.3.4",),
        check=_expect("version", "0.3.4"),
    ),
    Library("websockets", "websockets_driver.py", "peer", peers=("websockets",)),
    Library(
        "websocket-client",
        "websocket_client_driver.py",
        "peer",
        peers=("websocket-client",),
        check=_expect("wsaccel", False),
    ),
    Library(
        "websocket-client+wsaccel",
        "websocket_client_driver.py",
        "peer",
        peers=("websocket-client", "wsaccel"),
        check=_expect("wsaccel", True),
    ),
    Library("floor", "floor_driver.py", "reference"),
    Library("raw", "raw_driver.py", "reference"),
]
LIBRARY_NAMES = [library.name for library in LIBRARIES]
PEER_NAMES = [library.name for library in LIBRARIES if library.role == "peer"]
#: Libraries without permessage-deflate.
NO_DEFLATE = frozenset({"websocket-client", "websocket-client+wsaccel"})


# -- scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One workload, the same for every library."""

    name: str
    #: What it measures, in a few words (the counts are listed separately).
    title: str
    #: The driver's scenario: ``receive``, ``send_text``, ``send_binary``, ``echo``, ``import``.
    action: str
    count: int
    quick_count: int
    size: int = 0
    #: The server's path (``None`` for the import scenario).
    #: ``count`` is messages, or for the import scenario fresh processes per repetition.
    path: str | None = None
    compress: bool = False
    #: ``per_message`` (µs/msg), ``throughput`` (MB/s), ``import`` (ms), ``memory`` (MiB).
    metric: str = "per_message"
    #: Which references take part.
    references: frozenset[str] = frozenset({"raw", "floor"})

    def count_for(self, quick: bool) -> int:
        return self.quick_count if quick else self.count

    def url(self, port: int, count: int) -> str:
        query = f"count={count}"
        if self.size:
            query += f"&size={self.size}"
        return f"ws://127.0.0.1:{port}/{self.path}?{query}"

    def takes_part(self, library: Library) -> bool:
        if library.only is not None:
            return self.name in library.only
        if library.role == "reference":
            return library.name in self.references
        return not (self.compress and library.name in NO_DEFLATE)


SCENARIOS = [
    Scenario(
        "recv_text",
        "receive 64 B text",
        "receive",
        150_000,
        15_000,
        64,
        path="recv_text",
    ),
    Scenario(
        "recv_binary",
        "receive 1 MiB binary",
        "receive",
        1_000,
        100,
        MiB,
        path="recv_binary",
        metric="throughput",
    ),
    Scenario(
        "recv_deflate",
        "receive ~1 KiB JSON, compressed",
        "receive",
        100_000,
        10_000,
        path="recv_deflate",
        compress=True,
    ),
    Scenario("send_text", "send 64 B text", "send_text", 100_000, 10_000, 64, path="send"),
    Scenario(
        "send_binary",
        "send 1 MiB binary",
        "send_binary",
        400,
        40,
        MiB,
        path="send",
        metric="throughput",
    ),
    Scenario("echo", "echo round trip, 32 B", "echo", 20_000, 2_000, 32, path="echo"),
    Scenario(
        "import",
        "import, fresh process",
        "import",
        9,
        3,
        metric="import",
        references=frozenset(),
    ),
    Scenario(
        "memory",
        "peak memory receiving 1 MiB binary",
        "receive",
        200,
        20,
        MiB,
        path="recv_binary",
        metric="memory",
    ),
]
SCENARIO_NAMES = [scenario.name for scenario in SCENARIOS]


def expected_length(scenario: Scenario, count: int) -> int | None:
    """The characters or bytes a driver must report for ``count`` messages."""
    if scenario.name == "recv_deflate":
        messages = server.json_messages()
        whole, rest = divmod(count, len(messages))
        total = sum(len(message) for message in messages)
        return whole * total + sum(len(message) for message in messages[:rest])
    if scenario.action in ("receive", "echo"):
        return count * scenario.size
    return None


# -- running one measurement -------------------------------------------------------------


@dataclass
class Result:
    library: str
    scenario: str
    repetition: int
    seconds: float | None = None
    cpu_seconds: float | None = None
    hwm_kib: int | None = None
    rss_before_kib: int | None = None
    described: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


#: Environment variables a driver must not inherit.
CLEARED_VARIABLES = frozenset(
    {
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPYCACHEPREFIX",
        "LOMOND_NO_EXTENSIONS",
    }
)


def driver_command(library: Library, arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    environment = {
        name: value for name, value in os.environ.items() if name not in CLEARED_VARIABLES
    }
    environment["PYTHONPATH"] = os.pathsep.join(library.python_path())
    # Byte code is cached for every library alike, outside the source trees: without
    # it, a library whose .pyc files are missing would pay for compiling on import.
    environment["PYTHONPYCACHEPREFIX"] = str(setup_peers.peers_dir() / "pycache")
    environment.update(library.environment)
    # -S: no site-packages, so nothing installed in this interpreter can leak in.
    command = [sys.executable, "-S", str(DRIVERS / library.driver), *arguments]
    return command, environment


def run_driver(library: Library, arguments: list[str]) -> dict[str, object]:
    """Run one driver subprocess; return its JSON result.

    Raises:
        RuntimeError: It failed, timed out or printed no result.
    """
    command, environment = driver_command(library, arguments)
    try:
        completed = subprocess.run(
            command,
            env=environment,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {RUN_TIMEOUT:.0f} s") from None
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        stderr = completed.stderr.strip().splitlines()
        detail = stderr[-1] if stderr else f"exit status {completed.returncode}"
        raise RuntimeError(detail)
    answer: dict[str, object] = json.loads(lines[-1])
    return answer


def measure(
    library: Library, scenario: Scenario, repetition: int, port: int, quick: bool
) -> Result:
    """Run ``library`` once on ``scenario`` and check what it reports."""
    result = Result(library.name, scenario.name, repetition)
    count = scenario.count_for(quick)
    try:
        if scenario.action == "import":
            runs = [run_driver(library, ["import"]) for _ in range(count)]
            result.seconds = statistics.median(number(run, "seconds") for run in runs)
            answer = runs[-1]
        else:
            arguments = [
                scenario.action,
                f"url={scenario.url(port, count)}",
                f"count={count}",
                f"size={scenario.size}",
                f"compress={int(scenario.compress)}",
            ]
            answer = run_driver(library, arguments)
            result.seconds = number(answer, "seconds")
            result.cpu_seconds = number(answer, "cpu_seconds")
            if answer.get("hwm_kib") is not None:
                result.hwm_kib = int(number(answer, "hwm_kib"))
            if answer.get("rss_before_kib") is not None:
                result.rss_before_kib = int(number(answer, "rss_before_kib"))
            problem = check_answer(library, scenario, count, answer)
            if problem:
                raise RuntimeError(problem)
        described = answer.get("library")
        result.described = described if isinstance(described, dict) else {}
        problem = library.check(result.described)
        if problem:
            raise RuntimeError(problem)
    except RuntimeError as error:
        result.error = str(error)
    return result


def number(answer: dict[str, object], key: str) -> float:
    """A number from a driver's answer.

    Raises:
        RuntimeError: It is missing or not a number.
    """
    value = answer.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuntimeError(f"the driver's answer has no number {key!r}: {answer!r}")
    return float(value)


def warm_up(libraries: list[Library], scenarios: list[Scenario], port: int) -> None:
    """Run every library once on a few messages of each scenario, unmeasured.

    This fills the byte-code cache (every module a driver imports, lazily or not),
    so that no measurement pays for compiling.
    """
    for library in libraries:
        for scenario in scenarios:
            if not scenario.takes_part(library):
                continue
            if scenario.action == "import":
                arguments = ["import"]
            else:
                arguments = [
                    scenario.action,
                    f"url={scenario.url(port, 3)}",
                    "count=3",
                    f"size={scenario.size}",
                    f"compress={int(scenario.compress)}",
                ]
            try:
                run_driver(library, arguments)
            except RuntimeError as error:
                print(f"warm-up: {library.name} {scenario.name}: {error}", file=sys.stderr)


def check_answer(
    library: Library, scenario: Scenario, count: int, answer: dict[str, object]
) -> str | None:
    """What is wrong with a driver's answer, or ``None``."""
    if answer.get("messages") != count:
        return f"{answer.get('messages')} messages, expected {count}"
    if scenario.action.startswith("send"):
        report = f"received {count} messages {count * scenario.size} bytes"
        if answer.get("report") != report:
            return f"server reported {answer.get('report')!r}, expected {report!r}"
        return None
    expected = expected_length(scenario, count)
    if library.name != "raw" and expected is not None and answer.get("length") != expected:
        return f"received {answer.get('length')} characters/bytes, expected {expected}"
    return None


# -- the server ---------------------------------------------------------------------------


class ServerProcess:
    """``server.py`` in its own process, for the whole run."""

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-S", str(BENCHMARKS / "server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the benchmark server did not start ({line!r})")
        self.port = int(line)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the server stops when its stdin closes
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the report ---------------------------------------------------------------------------


def value_of(scenario: Scenario, result: Result, quick: bool) -> float | None:
    """The displayed value: µs/msg, MB/s, ms or MiB."""
    if not result.ok or result.seconds is None:
        return None
    count = scenario.count_for(quick)
    if scenario.metric == "per_message":
        return result.seconds / count * 1e6
    if scenario.metric == "throughput":
        return count * scenario.size / result.seconds / 1e6
    if scenario.metric == "import":
        return result.seconds * 1e3
    return None if result.hwm_kib is None else result.hwm_kib / 1024


UNITS = {"per_message": "µs/msg", "throughput": "MB/s", "import": "ms", "memory": "MiB VmHWM"}


def cost(scenario: Scenario, result: Result, clock: str) -> float | None:
    """What the ratios compare, lower being better: seconds, or peak memory.

    ``clock`` is ``"wall"`` (the timed window) or ``"cpu"`` (the client's CPU time over
    the whole connection; the import scenario always uses the wall clock).
    """
    if not result.ok:
        return None
    if scenario.metric == "memory":
        return None if result.hwm_kib is None else float(result.hwm_kib)
    if clock == "cpu" and scenario.action != "import":
        return result.cpu_seconds
    return result.seconds


def ratio(scenario: Scenario, lomond: float | None, other: float | None) -> float | None:
    """lomond ÷ other: a speed-up (above 1: lomond faster), or a memory ratio."""
    if lomond is None or other is None or lomond <= 0 or other <= 0:
        return None
    return lomond / other if scenario.metric == "memory" else other / lomond


@dataclass(frozen=True)
class Target:
    scenario: str
    text: str
    subject: str
    #: A library name, or ``"best peer"``.
    against: str
    threshold: float
    #: ``"at least"`` for speed-ups, ``"at most"`` for memory.
    sense: str = "at least"

    def met_by(self, value: float) -> bool:
        return value >= self.threshold if self.sense == "at least" else value <= self.threshold


TARGETS = [
    Target("recv_text", "≥ 2.5× the best peer", "lomond", "best peer", 2.5),
    Target("recv_binary", "≥ 0.9× the floor", "lomond", "floor", 0.9),
    Target("recv_deflate", "≥ 1.7× the best peer", "lomond", "best peer", 1.7),
    Target("send_text", "≥ 1.8× the best peer", "lomond", "best peer", 1.8),
    Target("send_binary", "≥ 1.0× websockets", "lomond", "websockets", 1.0),
    Target("send_binary", "pure Python ≥ 0.9× the floor", "lomond-pure", "floor", 0.9),
    Target("echo", "≥ 1.2× the best peer", "lomond", "best peer", 1.2),
    Target("import", "no slower than the fastest peer", "lomond", "best peer", 1.0),
    Target("memory", "≤ 1.3× the floor's", "lomond", "floor", 1.3, "at most"),
]


class Results:
    """Every measurement of a run, and the report made from them."""

    def __init__(self, quick: bool, repeat: int, clock: str = "wall") -> None:
        self.quick = quick
        self.repeat = repeat
        self.clock = clock
        self.items: list[Result] = []

    def add(self, result: Result) -> None:
        self.items.append(result)

    def find(self, scenario: str, library: str) -> list[Result]:
        return [r for r in self.items if r.scenario == scenario and r.library == library]

    def median_of(self, scenario: Scenario, library: str, what: str) -> float | None:
        results = [r for r in self.find(scenario.name, library) if r.ok]
        if what == "value":
            values = [value_of(scenario, r, self.quick) for r in results]
        elif what == "cpu":
            values = [r.cpu_seconds for r in results]
        else:
            values = [r.seconds for r in results]
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    def cost_in(self, scenario: Scenario, library: str, repetition: int) -> float | None:
        for result in self.find(scenario.name, library):
            if result.repetition == repetition:
                return cost(scenario, result, self.clock)
        return None

    def ratios(self, scenario: Scenario, subject: str, against: str) -> list[float]:
        """Per-repetition ratios of ``subject`` to ``against`` (or the best peer)."""
        found = []
        for repetition in range(self.repeat):
            mine = self.cost_in(scenario, subject, repetition)
            if against == "best peer":
                costs = [self.cost_in(scenario, peer, repetition) for peer in PEER_NAMES]
                present = [c for c in costs if c is not None]
                other = min(present) if present else None
            else:
                other = self.cost_in(scenario, against, repetition)
            value = ratio(scenario, mine, other)
            if value is not None:
                found.append(value)
        return found

    def report(self, scenarios: list[Scenario], libraries: list[Library]) -> Iterator[str]:
        names = [library.name for library in libraries]
        header = "| scenario | what | unit | " + " | ".join(names) + " |"
        rule = "|---|---|---|" + "---:|" * len(names)

        yield "### Medians"
        yield ""
        yield header
        yield rule
        for scenario in scenarios:
            cells = [
                format_value(
                    scenario,
                    self.median_of(scenario, name, "value"),
                    self.find(scenario.name, name),
                )
                for name in names
            ]
            label = f"| {scenario.name} | {scenario.title} | {UNITS[scenario.metric]} | "
            yield label + " | ".join(cells) + " |"
        yield ""
        yield "### Median seconds per run (memory: peak above the RSS before connecting, MiB)"
        yield ""
        yield "| scenario | " + " | ".join(names) + " |"
        yield "|---|" + "---:|" * len(names)
        for scenario in scenarios:
            cells = []
            for name in names:
                if scenario.metric == "memory":
                    deltas = [
                        (r.hwm_kib - r.rss_before_kib) / 1024
                        for r in self.find(scenario.name, name)
                        if r.ok and r.hwm_kib is not None and r.rss_before_kib is not None
                    ]
                    cells.append(f"+{statistics.median(deltas):.1f}" if deltas else "–")
                else:
                    seconds = self.median_of(scenario, name, "seconds")
                    cells.append("–" if seconds is None else f"{seconds:.3f}")
            yield f"| {scenario.name} | " + " | ".join(cells) + " |"
        yield ""
        yield (
            "### Median client CPU seconds per run (all threads, whole connection: "
            "near the seconds above when the client, not the server or the machine, "
            "set the pace)"
        )
        yield ""
        yield "| scenario | " + " | ".join(names) + " |"
        yield "|---|" + "---:|" * len(names)
        for scenario in scenarios:
            if scenario.action == "import":
                continue
            cpu = [self.median_of(scenario, name, "cpu") for name in names]
            cells = ["–" if value is None else f"{value:.3f}" for value in cpu]
            yield f"| {scenario.name} | " + " | ".join(cells) + " |"
        yield ""
        yield "### Ratios per repetition"
        yield ""
        clock = (
            "wall-clock time of the timed window"
            if self.clock == "wall"
            else "client CPU time (import: wall clock)"
        )
        yield (
            f"Speed-ups on {clock} (other's ÷ lomond's: above 1, lomond is faster); "
            "for memory, lomond's VmHWM ÷ the other's (below 1, lomond uses less). "
            "Best peer = the fastest peer in that repetition."
        )
        yield ""
        yield (
            "| scenario | lomond ÷ best peer (median) | per repetition "
            "| lomond ÷ floor (median) | per repetition |"
        )
        yield "|---|---:|---|---:|---|"
        for scenario in scenarios:
            if "lomond" not in names:
                continue
            peer_ratios = self.ratios(scenario, "lomond", "best peer")
            floor_ratios = self.ratios(scenario, "lomond", "floor")
            yield (
                f"| {scenario.name} | {format_median(peer_ratios)} | {format_list(peer_ratios)} "
                f"| {format_median(floor_ratios)} | {format_list(floor_ratios)} |"
            )
        yield ""
        yield "### Targets (issue 6)"
        yield ""
        yield "| scenario | target | ratio (median) | per repetition | met |"
        yield "|---|---|---:|---|---|"
        by_name = {scenario.name: scenario for scenario in scenarios}
        for target in TARGETS:
            measured = by_name.get(target.scenario)
            if measured is None or target.subject not in names:
                continue
            if target.against != "best peer" and target.against not in names:
                continue
            values = self.ratios(measured, target.subject, target.against)
            if not values:
                verdict = "not measured"
            else:
                met = target.met_by(statistics.median(values))
                in_reps = sum(target.met_by(value) for value in values)
                verdict = f"{'**yes**' if met else 'no'} ({in_reps}/{len(values)} reps)"
            label = (
                target.text if target.subject == "lomond" else f"{target.subject}: {target.text}"
            )
            yield (
                f"| {measured.name} | {label} | {format_median(values)} | "
                f"{format_list(values)} | {verdict} |"
            )
        failures = [r for r in self.items if not r.ok]
        if failures:
            yield ""
            yield "### Failed runs"
            yield ""
            for failure in failures:
                yield (
                    f"- {failure.scenario} / {failure.library} "
                    f"(repetition {failure.repetition + 1}): {failure.error}"
                )


def format_value(scenario: Scenario, value: float | None, results: list[Result]) -> str:
    if not results:
        return "n/a"
    if value is None:
        return "failed"
    if scenario.metric == "throughput":
        return f"{value:,.0f}"
    if scenario.metric == "memory":
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}×" if values else "–"


def format_list(values: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values) if values else "–"


# -- the run ------------------------------------------------------------------------------


def machine_description() -> Iterator[str]:
    """Where and on what the numbers were measured."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    yield f"- machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores ({model})"
    implementation = platform.python_implementation()
    yield f"- Python {platform.python_version()} ({implementation}), {sys.executable}"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--", "lomond"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        state = " with uncommitted changes in lomond/" if dirty else ""
        yield f"- lomond checkout: {commit}{state}"
    except (OSError, subprocess.CalledProcessError):
        yield "- lomond checkout: (not a git checkout)"


def versions(results: Results) -> str:
    seen: dict[str, str] = {}
    for result in results.items:
        described = result.described
        if result.ok and described and result.library not in seen:
            version = str(described.get("version"))
            extras = [key for key in ("wsaccel", "speedups") if described.get(key)]
            seen[result.library] = version + (f" ({', '.join(extras)})" if extras else "")
    return ", ".join(
        f"{name} {version}" for name, version in seen.items() if version != "reference"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts, 2 repetitions by default"
    )
    parser.add_argument("--repeat", type=int, help="repetitions (default 5; 2 with --quick)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIO_NAMES, default=SCENARIO_NAMES)
    parser.add_argument("--libs", nargs="+", choices=LIBRARY_NAMES, default=LIBRARY_NAMES)
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what the ratios compare: wall-clock time (default) or the client's CPU time",
    )
    parser.add_argument(
        "--report", type=Path, help="measure nothing: report on a file written by --json"
    )
    options = parser.parse_args(argv)
    if options.report:
        return report_saved(options.report, options.clock)
    repeat = options.repeat or (2 if options.quick else 5)
    scenarios = [s for s in SCENARIOS if s.name in options.scenarios]
    libraries = [library for library in LIBRARIES if library.name in options.libs]

    needed = sorted({peer for library in libraries for peer in library.peers})
    missing = setup_peers.ensure_peers(needed)
    skipped: list[str] = []
    if missing:
        skipped = [library.name for library in libraries if set(library.peers) & set(missing)]
        print(f"skipping {', '.join(skipped)}: not installable here", file=sys.stderr)
        libraries = [library for library in libraries if library.name not in skipped]

    results = Results(options.quick, repeat, options.clock)
    load_before = os.getloadavg()
    started = time.monotonic()
    with ServerProcess() as benchmark_server:
        print("warming up (byte-code cache)", file=sys.stderr, flush=True)
        warm_up(libraries, scenarios, benchmark_server.port)
        for repetition in range(repeat):
            for scenario in scenarios:
                taking_part = [library for library in libraries if scenario.takes_part(library)]
                shift = repetition % len(taking_part) if taking_part else 0
                for library in taking_part[shift:] + taking_part[:shift]:
                    result = measure(
                        library, scenario, repetition, benchmark_server.port, options.quick
                    )
                    results.add(result)
                    shown = value_of(scenario, result, options.quick)
                    status = (
                        f"{shown:,.2f} {UNITS[scenario.metric]} ({result.seconds:.3f} s)"
                        if shown is not None and result.seconds is not None
                        else f"FAILED: {result.error}"
                    )
                    progress = f"[{repetition + 1}/{repeat}] {scenario.name:<12} {library.name:<25}"
                    print(f"{progress} {status}", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    header = [
        "## lomond benchmarks" + (" (--quick)" if options.quick else ""),
        "",
        *machine_description(),
        f"- libraries: {versions(results)}",
        *([f"- skipped (could not be installed): {', '.join(skipped)}"] if skipped else []),
        f"- {repeat} repetitions, {elapsed / 60:.1f} min; load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f} (other processes may share the machine)",
        "- counts: " + ", ".join(f"{s.name} {s.count_for(options.quick):,}" for s in scenarios),
    ]
    print("\n".join([*header, "", *results.report(scenarios, libraries)]))
    if options.json:
        saved = {
            "header": header,
            "quick": options.quick,
            "repeat": repeat,
            "scenarios": [scenario.name for scenario in scenarios],
            "libraries": [library.name for library in libraries],
            "results": [vars(result) for result in results.items],
        }
        options.json.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    return 1 if any(not result.ok for result in results.items) else 0


def report_saved(path: Path, clock: str) -> int:
    """Print the report of a run saved with ``--json``, ratios on ``clock``."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    results = Results(saved["quick"], saved["repeat"], clock)
    for item in saved["results"]:
        results.add(Result(**item))
    scenarios = [s for s in SCENARIOS if s.name in saved["scenarios"]]
    libraries = [library for library in LIBRARIES if library.name in saved["libraries"]]
    print("\n".join([*saved["header"], "", *results.report(scenarios, libraries)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
