#!/usr/bin/env python3
"""Run the Autobahn|Testsuite fuzzingserver against lomond and summarise the results.

Usage::

    python compliance/run.py                 # every case (1.* - 13.*)
    python compliance/run.py '1.*' '2.*'     # a subset, by case-id pattern
    python compliance/run.py --markdown      # the table as markdown
    python compliance/run.py --check         # install + start the server only

Steps: install ``autobahntestsuite`` (Python 2.7 only) under pyenv's CPython
2.7.18 with ``pip install --target`` into a scratch directory (reused when
already installed); start ``wstest -m fuzzingserver`` on a free loopback port
with a generated spec; run ``compliance/client.py`` (lomond's public API only)
in a subprocess; read the server's ``index.json`` plus the per-case reports;
print a per-category table and every case that is not OK. Exit status 0 when
every case passed, 1 when any case FAILED, had a close behaviour other than OK,
was UNIMPLEMENTED with compression offered, or is missing from the report; 2
when the instrument itself could not run.

Only the standard library is used here; the 2.7 world is reached through
subprocesses.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

AUTOBAHN_VERSION = "25.10.1"
PYTHON2_VERSION = "2.7.18"
COMPLIANCE_DIR = Path(__file__).resolve().parent
REPO_DIR = COMPLIANCE_DIR.parent
DEFAULT_SCRATCH = COMPLIANCE_DIR / ".autobahn"
DEFAULT_REPORTS = COMPLIANCE_DIR / "reports"
CLIENT_SCRIPT = COMPLIANCE_DIR / "client.py"
INSTALLED_MARKER = ".installed"
CATEGORIES_FILE = "categories.json"
#: Seconds kept back from ``--timeout`` for report generation and shutdown.
REPORT_RESERVE = 60.0

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
#: Close behaviours that pass (the 7.1.6 and 7.13.* cases report INFORMATIONAL).
CLOSE_ACCEPTED = frozenset({"OK", "INFORMATIONAL"})
#: Category names as the testsuite defines them; the installed copy's list
#: (``categories.json`` in the install dir) is preferred when present.
CATEGORY_NAMES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Misc",
    "12": "WebSocket Compression (different payloads)",
    "13": "WebSocket Compression (different parameters)",
}
CATEGORY_DUMP = """\
import json, sys
from autobahntestsuite.case import CaseCategories, CaseSubCategories
names = dict(CaseCategories)
names.update(CaseSubCategories)
json.dump(names, open(sys.argv[1], "w"), indent=1, sort_keys=True)
"""


class InstrumentError(Exception):
    """The instrument (not lomond) could not do its job."""


class Deadline:
    """A point on the monotonic clock that bounds the whole run."""

    def __init__(self, seconds: float) -> None:
        """Expire ``seconds`` from now."""
        self.expires = time.monotonic() + seconds

    def remaining(self, reserve: float = 0.0) -> float:
        """Seconds left before the deadline (less ``reserve``), never negative."""
        return max(0.0, self.expires - reserve - time.monotonic())


# --------------------------------------------------------------------------
# Installing the testsuite under Python 2.7


def find_python2(explicit: str | None) -> Path:
    """Locate the CPython 2.7 interpreter the testsuite runs on.

    Order: ``--python2``, ``$AUTOBAHN_PYTHON2``, ``pyenv prefix 2.7.18``,
    ``$(pyenv root)/versions/2.7.18``, ``~/.pyenv/versions/2.7.18``.
    """
    if explicit:
        return Path(explicit)
    if os.environ.get("AUTOBAHN_PYTHON2"):
        return Path(os.environ["AUTOBAHN_PYTHON2"])
    candidates: list[Path] = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        for args in (["prefix", PYTHON2_VERSION], ["root"]):
            try:
                found = subprocess.run(
                    [pyenv, *args],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError):
                continue
            if found.returncode == 0 and found.stdout.strip():
                base = Path(found.stdout.strip().splitlines()[0])
                if args[0] == "root":
                    base = base / "versions" / PYTHON2_VERSION
                candidates.append(base / "bin" / "python")
    candidates.append(Path.home() / ".pyenv" / "versions" / PYTHON2_VERSION / "bin" / "python")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise InstrumentError(
        f"CPython {PYTHON2_VERSION} not found (tried {', '.join(map(str, candidates))}); "
        f"install it with `pyenv install {PYTHON2_VERSION}` or pass --python2"
    )


def python2_env(site_dir: Path | None) -> dict[str, str]:
    """Environment for the 2.7 interpreter: nothing of ours leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH"}
    }
    env["PYTHONUNBUFFERED"] = "1"
    if site_dir is not None:
        env["PYTHONPATH"] = str(site_dir)
    return env


def autobahn_works(python2: Path, site_dir: Path) -> bool:
    """Whether wstest and its dependencies import from ``site_dir``."""
    probe = subprocess.run(
        [
            str(python2),
            "-c",
            "import zope.interface, twisted, autobahn, autobahntestsuite.wstest",
        ],
        env=python2_env(site_dir),
        capture_output=True,
        timeout=120,
        check=False,
    )
    return probe.returncode == 0


def ensure_autobahn(python2: Path, scratch: Path, *, reinstall: bool = False) -> Path:
    """Install autobahntestsuite under ``scratch/site`` unless it is already there.

    The install goes to a staging directory first and is moved into place only
    once wstest imports, so an interrupted install is never mistaken for a
    good one. Returns the directory to put on the 2.7 ``PYTHONPATH``.
    """
    site_dir = scratch / "site"
    marker = site_dir / INSTALLED_MARKER
    if (
        not reinstall
        and marker.is_file()
        and marker.read_text().strip() == AUTOBAHN_VERSION
        and autobahn_works(python2, site_dir)
    ):
        return site_dir
    scratch.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="site-staging-", dir=scratch))
    pip_log = scratch / "pip.log"
    print(f"installing autobahntestsuite=={AUTOBAHN_VERSION} into {site_dir} (log: {pip_log})")
    command = [
        str(python2),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--no-input",
        "--target",
        str(staging),
        f"autobahntestsuite=={AUTOBAHN_VERSION}",
    ]
    try:
        with pip_log.open("w") as log:
            result = subprocess.run(
                command,
                env=python2_env(None),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=1200,
                check=False,
            )
        if result.returncode != 0:
            raise InstrumentError(
                f"pip install failed (exit {result.returncode}):\n{tail(pip_log, 30)}"
            )
        # zope.interface is a namespace package whose *-nspkg.pth is only read
        # from site directories, not from PYTHONPATH: give it a plain package.
        init = staging / "zope" / "__init__.py"
        if not init.exists():
            init.write_text("")
        if not autobahn_works(python2, staging):
            raise InstrumentError(f"autobahntestsuite installed but does not import ({staging})")
        subprocess.run(
            [str(python2), "-c", CATEGORY_DUMP, str(staging / CATEGORIES_FILE)],
            env=python2_env(staging),
            capture_output=True,
            timeout=120,
            check=False,
        )
        (staging / INSTALLED_MARKER).write_text(AUTOBAHN_VERSION + "\n")
        if site_dir.exists():
            shutil.rmtree(site_dir)
        staging.rename(site_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return site_dir


def tail(path: Path, lines: int) -> str:
    """Return the last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# The fuzzingserver


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_reports(reports: Path, agent: str) -> None:
    """Remove the files a previous run left in ``reports`` (ours only)."""
    reports.mkdir(parents=True, exist_ok=True)
    prefix = re.sub(r"[^a-z0-9]+", "_", agent.lower()).strip("_") + "_case_"
    ours = {
        "index.json",
        "index.html",
        "spec.json",
        "server.log",
        "client.log",
        "client.jsonl",
    }
    for path in reports.iterdir():
        if path.is_file() and (path.name in ours or path.name.startswith(prefix)):
            path.unlink()


def write_spec(reports: Path, port: int, cases: list[str], exclude: list[str]) -> Path:
    """Write the fuzzingserver spec (JSON) and return its path."""
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": str(reports),
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    path = reports / "spec.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def start_server(
    python2: Path, site_dir: Path, spec: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``wstest -m fuzzingserver`` (no embedded web server)."""
    command = [
        str(python2),
        "-u",
        "-m",
        "autobahntestsuite.wstest",
        "--mode",
        "fuzzingserver",
        "--spec",
        str(spec),
        "--webport",
        "0",
    ]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            env=python2_env(site_dir),
            cwd=str(spec.parent),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_listening(
    server: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float
) -> None:
    """Return once the server accepts TCP connections on ``port``."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if server.poll() is not None:
            raise InstrumentError(
                f"fuzzingserver exited with {server.returncode}:\n{tail(log_path, 30)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise InstrumentError(
        f"fuzzingserver not listening after {timeout:.0f}s:\n{tail(log_path, 30)}"
    )


def stop_process(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Terminate one process we started, then kill it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


def raw_websocket_texts(port: int, resource: str, timeout: float) -> list[str]:
    """Open ``resource`` with a minimal stdlib WebSocket client; return the text messages.

    Only for the server's control resources (``/getCaseCount``,
    ``/updateReports``), which send at most one small unfragmented message and
    then close: this checks the server without depending on lomond, and
    rescues the reports when the lomond client died.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {resource} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    texts: list[str] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode("ascii"))
        reader = sock.makefile("rb")
        status = reader.readline()
        if b" 101 " not in status:
            raise InstrumentError(f"{resource}: upgrade refused: {status!r}")
        while reader.readline() not in (b"\r\n", b""):
            pass
        while True:
            header = reader.read(2)
            if len(header) < 2:
                break
            opcode, length = header[0] & 0x0F, header[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", reader.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", reader.read(8))[0]
            payload = reader.read(length)
            if opcode == 0x1:
                texts.append(payload.decode("utf-8"))
            elif opcode == 0x8:
                mask = os.urandom(4)
                masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
                sock.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
                break
    return texts


# --------------------------------------------------------------------------
# The lomond client


def run_client(
    url: str,
    options: argparse.Namespace,
    reports: Path,
    case_count: int,
    deadline: Deadline,
) -> int | None:
    """Run client.py to completion or until the deadline; return its exit code.

    ``None`` means the client was killed at the deadline. Its output goes to
    ``reports/client.log``; the console gets progress and anomalous cases.
    """
    command = [
        options.client_python,
        "-u",
        str(CLIENT_SCRIPT),
        url,
        "--agent",
        options.agent,
        "--log",
        str(reports / "client.jsonl"),
        "--case-timeout",
        str(options.case_timeout),
        "--close-timeout",
        str(options.close_timeout),
    ]
    if not options.compress:
        command.append("--no-compress")
    if options.stream:
        command.append("--stream")
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the working tree as it is
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (options.lomond_path, os.environ.get("PYTHONPATH", "")) if part
    )
    started = time.monotonic()
    with (reports / "client.log").open("w") as log:
        client = subprocess.Popen(
            command,
            env=env,
            cwd=str(REPO_DIR),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert client.stdout is not None
        relay = threading.Thread(
            target=relay_client_output,
            args=(client.stdout, log, options.verbose, case_count),
            daemon=True,
        )
        relay.start()
        try:
            code: int | None = client.wait(timeout=deadline.remaining(REPORT_RESERVE))
        except subprocess.TimeoutExpired:
            print(f"run timed out after {time.monotonic() - started:.0f}s; stopping the client")
            stop_process(client)
            code = None
        relay.join(timeout=5)
    print(f"client finished in {time.monotonic() - started:.0f}s (exit {code})")
    return code


ANOMALY = re.compile(r"TIMED OUT|ABANDONED|EXCEPTION")
#: Other client output (lomond's own log lines, tracebacks) echoed at most this often.
MAX_OTHER_LINES = 20


def relay_client_output(stream: TextIO, log: TextIO, verbose: bool, case_count: int) -> None:
    """Copy the client's output to its log; echo progress, anomalies, and a few others."""
    step = max(1, case_count // 10)
    other_lines = 0
    for line in stream:
        log.write(line)
        log.flush()
        shown = line.rstrip()
        progress = re.match(r"\[(\d+)/\d+\]", shown)
        if progress:
            echo = verbose or bool(ANOMALY.search(shown)) or int(progress.group(1)) % step == 0
        else:
            other_lines += 1
            echo = verbose or other_lines <= MAX_OTHER_LINES
            if other_lines == MAX_OTHER_LINES + 1 and not verbose:
                print("  client: (more output in client.log)", flush=True)
        if echo:
            print(f"  client: {shown[:300]}", flush=True)


# --------------------------------------------------------------------------
# Reading and presenting the reports


@dataclass
class CaseResult:
    """One case as the fuzzingserver judged it, plus what the client saw."""

    case_id: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration: int | None
    detail: dict[str, Any]
    client: dict[str, Any] | None

    @property
    def sort_key(self) -> tuple[int, ...]:
        """Numeric sort key of the case id."""
        return case_sort_key(self.case_id)

    def failed(self, compress: bool, strict: bool = False) -> bool:
        """Whether this case makes the run fail (NON-STRICT too when ``strict``)."""
        return (
            self.behavior == "FAILED"
            or self.behavior_close not in CLOSE_ACCEPTED
            or (self.behavior == "UNIMPLEMENTED" and compress)
            or (self.behavior == "NON-STRICT" and strict)
        )

    def noteworthy(self) -> bool:
        """Whether this case is listed below the table."""
        return (
            self.behavior not in {"OK", "INFORMATIONAL"}
            or self.behavior_close not in CLOSE_ACCEPTED
        )


def case_sort_key(case_id: str) -> tuple[int, ...]:
    """'9.10.2' → (9, 10, 2), so cases sort numerically."""
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def load_results(reports: Path, agent: str) -> list[CaseResult]:
    """Read ``index.json`` and each case's report; attach the client's log."""
    index_path = reports / "index.json"
    if not index_path.is_file():
        raise InstrumentError(f"no report: {index_path} does not exist")
    index: dict[str, dict[str, dict[str, Any]]] = json.loads(index_path.read_text())
    if agent in index:
        cases = index[agent]
    elif len(index) == 1:
        cases = next(iter(index.values()))
    else:  # no case ran to its end (e.g. the client could not import lomond)
        print(f"agent {agent!r} has no results in {index_path} (agents: {sorted(index)})")
        cases = {}
    client_records: dict[str, dict[str, Any]] = {}
    client_log = reports / "client.jsonl"
    if client_log.is_file():
        for line in client_log.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                client_records[str(record.get("id"))] = record
    results = []
    for case_id, entry in cases.items():
        detail: dict[str, Any] = {}
        report_file = reports / str(entry.get("reportfile", ""))
        if report_file.is_file():
            detail = json.loads(report_file.read_text())
        results.append(
            CaseResult(
                case_id=case_id,
                behavior=str(entry.get("behavior")),
                behavior_close=str(entry.get("behaviorClose")),
                remote_close_code=entry.get("remoteCloseCode"),
                duration=entry.get("duration"),
                detail=detail,
                client=client_records.get(case_id),
            )
        )
    return sorted(results, key=lambda result: result.sort_key)


def load_category_names(site_dir: Path | None) -> dict[str, str]:
    """Category and sub-category names, from the install when available."""
    names = dict(CATEGORY_NAMES)
    if site_dir is not None and (site_dir / CATEGORIES_FILE).is_file():
        names.update(json.loads((site_dir / CATEGORIES_FILE).read_text()))
    return names


TABLE_HEADER = (
    "category",
    "name",
    "cases",
    "OK",
    "NON-STRICT",
    "INFORMATIONAL",
    "UNIMPLEMENTED",
    "FAILED",
    "close OK",
    "close INFO",
    "close other",
)


def table_rows(results: list[CaseResult], depth: int, names: dict[str, str]) -> list[list[str]]:
    """One row per category (first ``depth`` parts of the case id) plus a total."""
    groups: dict[str, list[CaseResult]] = {}
    for result in results:
        parts = result.case_id.split(".")
        # "2.3" is a case, not a sub-category: only "12.1.5"-style ids split further.
        key = ".".join(parts[: depth if len(parts) > depth else 1])
        groups.setdefault(key, []).append(result)
    rows = []
    for key in sorted(groups, key=case_sort_key):
        rows.append(count_row(key, names.get(key, names.get(key.split(".")[0], "")), groups[key]))
    rows.append(count_row("total", "", results))
    return rows


def count_row(key: str, name: str, results: list[CaseResult]) -> list[str]:
    """Count each behaviour (and close behaviour) in one group of cases."""
    behaviors = Counter(result.behavior for result in results)
    closes = Counter(result.behavior_close for result in results)
    close_ok, close_info = closes.get("OK", 0), closes.get("INFORMATIONAL", 0)
    unknown = sum(count for behavior, count in behaviors.items() if behavior not in BEHAVIORS)
    counts = [str(behaviors.get(behavior, 0)) for behavior in BEHAVIORS]
    if unknown:
        counts[-1] += f" (+{unknown} other)"
    close_other = len(results) - close_ok - close_info
    return [
        key,
        name,
        str(len(results)),
        *counts,
        str(close_ok),
        str(close_info),
        str(close_other),
    ]


def render_table(rows: list[list[str]], markdown: bool, name_width: int = 46) -> str:
    """Plain aligned text, or a GitHub markdown table."""
    if markdown:
        lines = ["| " + " | ".join(TABLE_HEADER) + " |"]
        lines.append("|" + "|".join(["---", "---"] + ["--:"] * (len(TABLE_HEADER) - 2)) + "|")
        for row in rows:
            cells = [f"**{cell}**" if row[0] == "total" and cell else cell for cell in row]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
    clipped = [
        [
            row[0],
            row[1] if len(row[1]) <= name_width else row[1][: name_width - 1] + "…",
            *row[2:],
        ]
        for row in [list(TABLE_HEADER), *rows]
    ]
    widths = [max(len(row[column]) for row in clipped) for column in range(len(TABLE_HEADER))]
    lines = []
    for number, row in enumerate(clipped):
        cells = [
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0 or number == len(clipped) - 2:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plain(text: object, limit: int = 400) -> str:
    """Report text without HTML tags, on one line, clipped to ``limit`` chars."""
    flat = re.sub(r"<[^>]+>", " ", str(text))
    flat = re.sub(r"\s+", " ", flat).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe_case(result: CaseResult, markdown: bool) -> list[str]:
    """Several lines: what the server expected, what it got, what the client saw."""
    detail = result.detail
    head = f"{result.case_id}: behavior={result.behavior}, close={result.behavior_close}"
    if result.remote_close_code is not None:
        head += f", lomond's close code={result.remote_close_code}"
    lines = [head]
    facts = [
        ("case", detail.get("description")),
        ("expectation", detail.get("expectation")),
        ("result", detail.get("result")),
        ("close result", detail.get("resultClose")),
    ]
    if result.behavior not in {"OK", "INFORMATIONAL"}:
        facts.append(("expected events", json.dumps(detail.get("expected"))))
        facts.append(("received events", json.dumps(detail.get("received"))))
    if result.behavior_close not in CLOSE_ACCEPTED:
        close_facts = {
            name: detail.get(name)
            for name in (
                "expectedClose",
                "localCloseCode",
                "remoteCloseCode",
                "remoteCloseReason",
                "wasClean",
                "wasNotCleanReason",
                "droppedByMe",
                "wasCloseHandshakeTimeout",
                "wasServerConnectionDropTimeout",
            )
            if name in detail
        }
        facts.append(("close details", json.dumps(close_facts)))
    client = result.client
    if client is not None:
        seen = "; ".join(client.get("events") or []) or "no close/error events"
        extra = [
            f"echoed text={client.get('texts')} binary={client.get('binaries')}",
            f"{client.get('duration', 0):.2f}s",
        ]
        if client.get("send_errors"):
            extra.append(f"send errors: {client['send_errors'][:3]}")
        if client.get("timed_out"):
            extra.append("client timed out and called close()")
        if client.get("abandoned"):
            extra.append("client abandoned the loop")
        if client.get("exception"):
            extra.append(f"exception: {client['exception']}")
        facts.append(("lomond did", f"{seen} ({', '.join(extra)})"))
    bullet = "  - " if markdown else "    "
    for label, value in facts:
        if value not in (None, "", "null"):
            lines.append(f"{bullet}{label}: {plain(value)}")
    if markdown:
        lines[0] = f"- **{result.case_id}**: " + head.split(": ", 1)[1]
    return lines


def print_summary(
    results: list[CaseResult],
    expected_count: int | None,
    options: argparse.Namespace,
    names: dict[str, str],
    reports: Path,
    client_code: int | None = 0,
) -> int:
    """Print the table and the case list; return the exit status."""
    print()
    print(render_table(table_rows(results, options.depth, names), options.markdown))
    failing = [result for result in results if result.failed(options.compress, options.strict)]
    noted = [result for result in results if result.noteworthy() and result not in failing]
    missing = 0 if expected_count is None else max(0, expected_count - len(results))
    heading = "### " if options.markdown else ""
    if failing:
        print(f"\n{heading}Failing cases ({len(failing)})\n")
        for result in failing:
            print("\n".join(describe_case(result, options.markdown)))
    if noted:
        print(f"\n{heading}Passing with a note ({len(noted)}: NON-STRICT or UNIMPLEMENTED)\n")
        for result in noted:
            print("\n".join(describe_case(result, options.markdown)))
    if missing:
        print(f"\n{missing} of {expected_count} selected cases are missing from the report")
    if client_code is not None and client_code != 0:
        print(f"\nclient.py exited with status {client_code} (see {reports / 'client.log'})")
    elif client_code is None and expected_count is not None:
        print(f"\nclient.py was stopped at the --timeout deadline (see {reports / 'client.log'})")
    verdict = "FAIL" if failing or missing else "PASS"
    print(
        f"\n{verdict}: {len(results)} cases, {len(failing)} failing, {len(noted)} noted, "
        f"{missing} missing; compress={options.compress}; reports in {reports}"
    )
    return 1 if failing or missing else 0


# --------------------------------------------------------------------------
# Putting it together


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Run the Autobahn|Testsuite fuzzingserver against lomond.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "cases", nargs="*", default=["*"], help="case-id patterns, e.g. '1.*' '7.5.1'"
    )
    parser.add_argument("--exclude", action="append", default=[], help="case pattern to skip")
    parser.add_argument(
        "--no-compress",
        dest="compress",
        action="store_false",
        help="do not offer permessage-deflate (12.*/13.* become UNIMPLEMENTED, not failures)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="the client receives parts (connect(stream=True)) and echoes them streamed",
    )
    parser.add_argument("--markdown", action="store_true", help="print markdown")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="count NON-STRICT as failing (the target is every case OK)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        choices=(1, 2),
        default=1,
        help="group by '12' (1) or '12.1' (2)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="bound on the whole run (s)")
    parser.add_argument("--case-timeout", type=float, default=120.0, help="client: per case (s)")
    parser.add_argument("--close-timeout", type=float, default=10.0, help="client: close_timeout")
    parser.add_argument("--agent", default="lomond", help="agent name in the reports")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH, help="install dir")
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="report dir")
    parser.add_argument("--python2", help="CPython 2.7 interpreter (default: pyenv's 2.7.18)")
    parser.add_argument(
        "--client-python",
        default=sys.executable,
        help="interpreter that runs client.py",
    )
    parser.add_argument(
        "--lomond-path",
        default=str(REPO_DIR),
        help="put this first on the client's PYTHONPATH",
    )
    parser.add_argument("--reinstall", action="store_true", help="reinstall the testsuite")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only install, start the server and query it",
    )
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="only re-read an existing report dir",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="echo every client line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Install, serve, run the client, summarise. Returns the exit status."""
    options = parse_arguments(argv)
    reports = options.reports.resolve()
    scratch = options.scratch.resolve()
    site_dir = scratch / "site"
    if options.summarize_only:
        results = load_results(reports, options.agent)
        return print_summary(results, None, options, load_category_names(site_dir), reports)

    deadline = Deadline(options.timeout)
    python2 = find_python2(options.python2)
    site_dir = ensure_autobahn(python2, scratch, reinstall=options.reinstall)
    clean_reports(reports, options.agent)
    port = free_port()
    spec = write_spec(reports, port, options.cases, options.exclude)
    server_log = reports / "server.log"
    server = start_server(python2, site_dir, spec, server_log)
    try:
        wait_listening(server, port, server_log, timeout=min(60.0, deadline.remaining()))
        count_texts = raw_websocket_texts(port, "/getCaseCount", timeout=30.0)
        case_count = int(json.loads(count_texts[0])) if count_texts else 0
        print(
            f"fuzzingserver {AUTOBAHN_VERSION} (pid {server.pid}) listening on 127.0.0.1:{port}; "
            f"{case_count} cases selected by {options.cases}"
        )
        if options.check:
            return 0
        if case_count == 0:
            raise InstrumentError(f"no case matches {options.cases}")
        url = f"ws://127.0.0.1:{port}"
        code = run_client(url, options, reports, case_count, deadline)
        if code != 0 or not (reports / "index.json").is_file():
            print("asking the server for its reports directly (the client did not)")
            agent = quote(options.agent, safe="")
            raw_websocket_texts(port, f"/updateReports?agent={agent}", timeout=60.0)
    finally:
        stop_process(server)
    results = load_results(reports, options.agent)
    names = load_category_names(site_dir)
    return print_summary(results, case_count, options, names, reports, code)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InstrumentError as error:
        print(f"compliance: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
