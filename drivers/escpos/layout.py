"""The printed ticket and the technician's test page: what goes where, as a list of blocks.

A hall changes its ticket by editing TICKET below. Text blocks are
`str.format` templates over the slip's fields (see `_ticket_fields`); a block
with `when` prints only when that field is set (not None, False or empty).
Every text block is wrapped to the paper, counting a Chinese character as two
columns and dividing the columns by the block's character width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import TicketSlip
from .codec import Alignment, Job, display_width
from .profiles import Profile


@dataclass(frozen=True)
class Text:
    template: str
    align: Alignment = "left"
    bold: bool = False
    size: tuple[int, int] = (1, 1)       # character width, height (1..8)
    when: str | None = None


@dataclass(frozen=True)
class Rule:
    """A line across the paper."""

    char: str = "-"


@dataclass(frozen=True)
class Blank:
    lines: int = 1


@dataclass(frozen=True)
class QrCode:
    template: str
    when: str | None = None


Block = Text | Rule | Blank | QrCode

TICKET: tuple[Block, ...] = (
    Text("{hall}", align="center", bold=True, size=(1, 2)),
    Text("{service}", align="center", size=(1, 2)),
    Rule(),
    Text("{number}", align="center", bold=True, size=(4, 4)),
    Text("【优先】", align="center", bold=True, size=(2, 2), when="priority"),
    Rule(),
    Text("前面还有 {waiting_ahead} 人等候", when="waiting_ahead"),
    Text("预计等候约 {est_wait_min} 分钟", when="est_wait_min"),
    Text("请到 {windows} 办理", bold=True, when="windows"),
    Text("取号时间：{issued_at}"),
    Blank(),
    QrCode("{status_url}", when="status_url"),
    Blank(),
    Text("扫码查看排队进度", align="center", when="status_url"),
    Blank(),
    Text("请备齐：{materials}", when="materials"),
    Rule(),
    Text("请留意叫号，过号请到服务台咨询", align="center"),
    Text("本票当日有效", align="center"),
)

LIST_SEPARATOR = "、"


def ticket_job(slip: TicketSlip, profile: Profile, encoding: str) -> bytes:
    """The bytes that print `slip` on a printer of `profile`."""
    return render_blocks(TICKET, _ticket_fields(slip), profile, encoding)


def _ticket_fields(slip: TicketSlip) -> dict[str, Any]:
    return {
        "hall": slip.hall,
        "service": slip.service,
        "number": slip.number,
        "priority": slip.priority,
        "waiting_ahead": slip.waiting_ahead,
        "est_wait_min": slip.est_wait_min,
        "issued_at": slip.issued_at,
        "windows": LIST_SEPARATOR.join(slip.windows),
        "status_url": slip.status_url,
        "materials": LIST_SEPARATOR.join(slip.materials),
    }


def test_page_job(profile: Profile, encoding: str, identity: dict[str, str]) -> bytes:
    """The technician's test page: what this printer is set up as, and samples
    that show whether Chinese text, widths, QR codes and the cutter work."""
    blocks: list[Block] = [
        Text("打印机测试页 TEST PAGE", align="center", bold=True, size=(1, 2)),
        Rule("="),
        Text(f"profile: {profile.name} ({profile.paper_mm} mm)"),
        Text(f"width: {profile.chars_per_line} columns, {profile.dots_per_line} dots"),
        Text(f"encoding: {encoding}"),
        Text(f"qr: {profile.qr}, module {profile.qr_module_size}; "
             f"cut: {profile.cut}, feed {profile.feed_before_cut}"),
        *(Text(_literal(f"{key}: {value}")) for key, value in identity.items()),
        Rule(),
        Text("中文：请A012号到5号窗口办理"),
        Text("——————————"),
        Text("：；，。、！？《》【】"),
        Text("ＡＢＣ１２３"),
        Text("大字 A012", bold=True, size=(2, 2)),
        Rule(),
        Text(column_ruler(profile.chars_per_line)),
        Text(("一二三四五六七八九十" * profile.chars_per_line)[:profile.chars_per_line // 2]),
        Blank(),
        QrCode("kioskd test page"),
    ]
    return render_blocks(tuple(blocks), {}, profile, encoding, beep=True)


def _literal(text: str) -> str:
    """`text` as a template that prints it as is."""
    return text.replace("{", "{{").replace("}", "}}")


def column_ruler(columns: int) -> str:
    """'....:....1....:....2' up to `columns`: shows where the paper ends."""
    marks = []
    for column in range(1, columns + 1):
        marks.append(str(column // 10 % 10) if column % 10 == 0 else ":" if column % 5 == 0 else ".")
    return "".join(marks)


def render_blocks(blocks: tuple[Block, ...], fields: dict[str, Any], profile: Profile,
                  encoding: str, *, beep: bool = False) -> bytes:
    job = Job(encoding).initialize()
    for block in blocks:
        if isinstance(block, (Text, QrCode)) and block.when and not _is_set(fields.get(block.when)):
            continue
        if isinstance(block, Text):
            width, height = block.size
            job.align(block.align).bold(block.bold).size(width, height)
            for line in wrap(block.template.format(**fields), profile.chars_per_line // width):
                job.line(line)
            job.size(1, 1).bold(False).align("left")
        elif isinstance(block, Rule):
            job.line(block.char * (profile.chars_per_line // display_width(block.char)))
        elif isinstance(block, Blank):
            job.feed(block.lines)
        else:
            data = block.template.format(**fields)
            if profile.qr == "native":
                job.align("center").qr(data, profile.qr_module_size).align("left")
            else:
                job.qr_image(data, profile.qr_module_size, profile.dots_per_line)
    if beep:
        job.beep()
    job.feed(profile.feed_before_cut).cut(partial=profile.cut == "partial")
    return job.bytes()


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != "" and value != ()


BREAK_AFTER = " 、，,；;：:"
NO_LINE_START = "、，。；：？！）》」』】,.;:?!)"


def wrap(text: str, columns: int) -> list[str]:
    """`text` cut into lines of at most `columns` display columns; a line
    breaks after a space or a list separator when one is near, and never
    starts with closing punctuation."""
    lines: list[str] = []
    current = ""
    for char in text:
        if current and display_width(current + char) > columns:
            if char == " ":
                lines.append(current)
                current = ""
                continue
            head, current = _break(current, char, columns)
            lines.append(head)
        current += char
    if current or not lines:
        lines.append(current)
    return [line.rstrip() for line in lines]


def _break(current: str, next_char: str, columns: int) -> tuple[str, str]:
    """Split the full line `current` before `next_char` is added: (finished line, carried over)."""
    if next_char in NO_LINE_START and len(current) > 1 \
            and display_width(current[-1] + next_char) <= columns:
        return current[:-1], current[-1]
    breaks = [index + 1 for index, char in enumerate(current) if char in BREAK_AFTER]
    if breaks and display_width(current[:breaks[-1]]) > columns // 2:
        return current[:breaks[-1]], current[breaks[-1]:].lstrip()
    return current, ""
