"""Terminal output: consoles, bars and sparklines, and the ``sessions`` listing and transcript views."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from agno_mongo.cli.common import fmt_time

STATUS_STYLES = {"COMPLETED": "green", "RUNNING": "yellow", "PENDING": "yellow", "ERROR": "red", "CANCELLED": "red"}


def stdout_console() -> Console:
    """A console on the current stdout (``CliRunner`` swaps it), never interpreting stored text as markup."""
    return Console(highlight=False, soft_wrap=False)


def progress_bar(json_mode: bool) -> Progress:
    """A progress bar on stderr, only drawn on a terminal and never in ``--json`` mode."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_mode or not console.is_terminal,
    )


_EIGHTHS = " ▏▎▍▌▋▊▉"
_SPARKS = "▁▂▃▄▅▆▇█"


def bar(value: float, maximum: float, width: int = 30) -> str:
    """A horizontal bar of ``value`` out of ``maximum`` in eighths of a character."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / maximum * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def sparkline(values: Iterable[float]) -> str:
    """One character per value, ``▁`` to ``█`` scaled to the largest; ``·`` for zero."""
    items = list(values)
    top = max(items, default=0)
    if top <= 0:
        return "·" * len(items)
    return "".join("·" if v <= 0 else _SPARKS[min(7, int(v / top * 7.999))] for v in items)


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def human_bytes(size: int) -> str:
    """Bytes as B / KiB / MiB."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 2**20:.2f} MiB"


def print_sessions(sessions: list[dict[str, Any]], total: int | None, page: int, limit: int) -> None:
    """A page of session rows as a table with its position in the whole listing."""
    pages = max(1, -(-int(total or 0) // limit))
    first = (page - 1) * limit + 1
    title = f"Sessions {first}-{first + len(sessions) - 1} of {total} (page {page}/{pages})" if sessions else None
    table = Table(title=title or f"No sessions on page {page} ({total} in all)", title_justify="left")
    for column in ("session", "name", "type", "component", "user", "created (UTC)", "updated (UTC)"):
        table.add_column(column, overflow="fold", no_wrap=column.endswith("(UTC)"))
    for item in sessions:
        table.add_row(
            item["session_id"],
            item["name"] or "",
            item["session_type"] or "",
            item["component_id"] or "",
            item["user_id"] or "",
            fmt_time(item["created_at"])[:16],
            fmt_time(item["updated_at"])[:16],
        )
    stdout_console().print(table)


def print_transcript(shown: Mapping[str, Any], *, system: bool) -> None:
    """A transcript (:func:`agno_mongo.cli.shape.transcript`): a header, then every run."""
    console = stdout_console()
    header = Text(f"Session {shown['session_id']}", style="bold")
    if shown["name"]:
        header.append(f"  “{shown['name']}”")
    console.print(header)
    facts = [
        f"{shown['session_type'] or '?'} {shown['component_id'] or ''}".strip(),
        f"user {shown['user_id'] or '-'}",
        f"created {fmt_time(shown['created_at'])}",
        f"updated {fmt_time(shown['updated_at'])}",
        f"{len(shown['runs'])} runs",
    ]
    console.print(Text(" · ".join(facts), style="dim"))
    for number, run in enumerate(shown["runs"], start=1):
        print_run(console, number, len(shown["runs"]), run, system=system)


def print_run(console: Console, number: int, count: int, run: Mapping[str, Any], *, system: bool) -> None:
    """One run of a transcript: a header rule, then its messages."""
    model = run["model"] or "no model"
    if run["model_provider"]:
        model += f" ({run['model_provider']})"
    parts = [
        f"Run {number}/{count}",
        str(run["status"] or "?"),
        model,
        f"{run['total_tokens']} tokens ({run['input_tokens']} in / {run['output_tokens']} out)",
    ]
    if run["duration"] is not None:
        parts.append(f"{run['duration']:.2f} s")
    parts.append(fmt_time(run["created_at"]))
    if run["parent_run_id"]:
        parts.append(f"member of {run['parent_run_id']}")
    console.print()
    console.print(Text("── " + " · ".join(parts), style=STATUS_STYLES.get(str(run["status"]), "")), soft_wrap=True)
    for message in run["messages"]:
        role = message["role"]
        if role == "system" and not system:
            continue
        label = Text(f"{role:>9} ", style={"user": "bold cyan", "assistant": "bold green"}.get(role, "dim"))
        if role == "tool":
            label = Text(f"{'tool':>9} ", style="magenta")
            console.print(label + Text(f"{message.get('tool_name') or ''} ⇒ {shorten(message['content'], 400)}"))
            continue
        if message["content"]:
            console.print(label + Text(message["content"]))
            label = Text(" " * 10)
        for call in message.get("tool_calls") or []:
            console.print(label + Text(f"→ {call['name']}({call['arguments']})", style="magenta"))
            label = Text(" " * 10)
