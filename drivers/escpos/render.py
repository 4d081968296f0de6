"""Draw a decoded ticket as the paper would look: a PNG a technician can open."""

from __future__ import annotations

import logging
import unicodedata
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .codec import display_width, qr_picture
from .emulator import DecodedTicket, Line, PrintedImage, PrintedQr
from .profiles import Profile

log = logging.getLogger(__name__)

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
             Path.home() / ".local/share/fonts", Path.home() / ".fonts")
# Noto Sans CJK from Debian's fonts-noto-cjk first, then other packagings of it
FONT_FILES = {
    False: ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansSC-Regular.otf",
            "NotoSansSC-Regular.ttf", "wqy-microhei.ttc", "wqy-zenhei.ttc"),
    True: ("NotoSansCJK-Bold.ttc", "NotoSansCJKsc-Bold.otf", "NotoSansSC-Bold.otf",
           "NotoSansSC-Bold.ttf"),
}
SIMPLIFIED_CHINESE_FACE = "SC"      # a .ttc holds JP, KR, SC, TC, HK faces; halls read SC glyphs

CHARACTER_HEIGHT = 24               # font A: 12 x 24 dots; a Chinese character is 24 x 24
GLYPH_SIZE = 22                     # font size that keeps a 24-dot character inside its cell
BASELINE = 20                       # dots from the top of a 24-dot cell
LINE_SPACING = 30                   # default ESC 2 line feed, in dots
TOP_MARGIN = 16
CUT_MARGIN = 14
DASH, GAP = 14, 8
PAPER, INK, CUT_LINE = 255, 0, 150


def save_png(ticket: DecodedTicket, profile: Profile, path: Path) -> Path:
    render_ticket(ticket, profile).save(path)
    return path


def render_ticket(ticket: DecodedTicket, profile: Profile) -> Image.Image:
    """The ticket on white paper `profile.dots_per_line` dots wide."""
    width = profile.dots_per_line
    rows: list[tuple[Image.Image, str]] = []
    for item in ticket.printed:
        if isinstance(item, Line):
            rows.extend((row, item.align) for row in _line_rows(item, profile))
        elif isinstance(item, PrintedQr):
            rows.append((qr_picture(item.data, item.module_size), item.align))
        elif isinstance(item, PrintedImage):
            rows.append((_raster(item), item.align))
    height = TOP_MARGIN + sum(row.height for row, _ in rows) + (2 * CUT_MARGIN if ticket.cut else 0)
    paper = Image.new("L", (width, max(height, TOP_MARGIN)), PAPER)
    top = TOP_MARGIN
    for row, align in rows:
        paper.paste(row, (_left(row.width, width, align), top))
        top += row.height
    if ticket.cut:
        _dashed_line(paper, top + CUT_MARGIN)
    return paper


def _line_rows(line: Line, profile: Profile) -> list[Image.Image]:
    """A line as the printer prints it: wrapped where the paper ends, each row
    as tall as its characters plus the line spacing left over."""
    if not line.text:
        return [Image.new("L", (1, LINE_SPACING), PAPER)]
    column_dots = profile.dots_per_column * line.width
    columns = profile.dots_per_line // column_dots
    rows: list[str] = [""]
    for char in line.text:
        if rows[-1] and display_width(rows[-1] + char) > columns:
            rows.append("")
        rows[-1] += char
    cell_height = CHARACTER_HEIGHT * line.height
    row_height = cell_height + LINE_SPACING - CHARACTER_HEIGHT
    images = []
    for text in rows:
        image = Image.new("L", (max(1, display_width(text) * column_dots), row_height), PAPER)
        left = 0
        for char in text:
            cell_width = display_width(char) * column_dots
            glyph = _glyph(char, line.bold, line.width, line.height, cell_width, row_height)
            image.paste(glyph, (left + (cell_width - glyph.width) // 2, 0))
            left += cell_width
        images.append(image)
    return images


@lru_cache(maxsize=4096)
def _glyph(char: str, bold: bool, width: int, height: int, cell_width: int,
           row_height: int) -> Image.Image:
    """One character drawn `height` times tall and `width` times wide, no wider than its cell;
    descenders hang into the line spacing below the cell. A control or line-breaking
    character (GB18030 decodes to U+0085 and U+2029 too) prints as a blank: the
    text layout refuses to draw one."""
    if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
        char = " "
    font = _font(bold, GLYPH_SIZE * height)
    advance = max(1, round(font.getlength(char)))
    image = Image.new("L", (advance, row_height), PAPER)
    ImageDraw.Draw(image).text((0, BASELINE * height), char, font=font, fill=INK, anchor="ls",
                               stroke_width=1 if bold and not _font_path(True) else 0,
                               stroke_fill=INK)
    target = min(cell_width, round(advance * width / height))
    return image if target == advance else image.resize((max(1, target), row_height), Image.LANCZOS)


def _raster(image: PrintedImage) -> Image.Image:
    picture = Image.frombytes("1", (image.width, image.height), image.bits)
    return Image.eval(picture.convert("L"), lambda value: 255 - value)


def _left(item_width: int, paper_width: int, align: str) -> int:
    free = max(0, paper_width - item_width)
    return {"left": 0, "center": free // 2, "right": free}.get(align, 0)


def _dashed_line(paper: Image.Image, y: int) -> None:
    draw = ImageDraw.Draw(paper)
    for x in range(0, paper.width, DASH + GAP):
        draw.line((x, y, x + DASH - 1, y), fill=CUT_LINE, width=3)


@lru_cache(maxsize=None)
def _font_path(bold: bool) -> Path | None:
    for name in FONT_FILES[bold]:
        for directory in FONT_DIRS:
            found = next(directory.rglob(name), None) if directory.is_dir() else None
            if found is not None:
                return found
    return None


@lru_cache(maxsize=None)
def _font(bold: bool, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = _font_path(bold) or _font_path(False)
    if path is None:
        log.warning("printer emulator: no CJK font found (install fonts-noto-cjk); "
                    "Chinese will show as boxes")
        return ImageFont.load_default(size)
    for index in range(10 if path.suffix == ".ttc" else 1):
        try:
            font = ImageFont.truetype(str(path), size, index=index)
        except OSError:
            break
        if SIMPLIFIED_CHINESE_FACE in font.getname()[0].split():
            return font
    return ImageFont.truetype(str(path), size)
