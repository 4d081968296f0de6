"""Printer models as data: paper width, columns, dots, how QR codes and cuts are done."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

QrMethod = Literal["native", "image"]
CutKind = Literal["partial", "full"]


@dataclass(frozen=True)
class Profile:
    """What a printer model can do, as far as a ticket's layout cares."""

    name: str
    paper_mm: int
    chars_per_line: int          # font A (12x24 dots), ASCII columns; a CJK character takes two
    dots_per_line: int           # printable width in dots
    qr: QrMethod = "native"      # "native": GS ( k; "image": a raster picture (GS v 0)
    qr_module_size: int = 6      # dots per QR module
    cut: CutKind = "partial"
    feed_before_cut: int = 4     # lines fed so the last line clears the cutter

    def __post_init__(self) -> None:
        if self.qr not in ("native", "image"):
            raise ValueError(f"profile {self.name}: qr must be 'native' or 'image', not {self.qr!r}")
        if self.cut not in ("partial", "full"):
            raise ValueError(f"profile {self.name}: cut must be 'partial' or 'full', not {self.cut!r}")
        if not 1 <= self.qr_module_size <= 16:
            raise ValueError(f"profile {self.name}: qr_module_size must be 1..16")
        if self.dots_per_line % self.chars_per_line:
            raise ValueError(f"profile {self.name}: {self.dots_per_line} dots do not divide "
                             f"into {self.chars_per_line} columns")

    @property
    def dots_per_column(self) -> int:
        return self.dots_per_line // self.chars_per_line


_58MM = Profile("58mm", paper_mm=58, chars_per_line=32, dots_per_line=384, qr_module_size=5)
_80MM = Profile("80mm", paper_mm=80, chars_per_line=48, dots_per_line=576, qr_module_size=6)

PROFILES: dict[str, Profile] = {
    "58mm": _58MM,
    "80mm": _80MM,
    # printers without GS ( k print the QR code as a picture
    "58mm-image": replace(_58MM, name="58mm-image", qr="image"),
    "80mm-image": replace(_80MM, name="80mm-image", qr="image"),
}
