"""Reading the cells of a small ``.xlsx`` workbook with the standard library only (zip + XML).

Datasets ship class-name tables as Excel files (PKU-MMD ``Actions.xlsx``). An ``.xlsx`` file is plain OOXML
(ECMA-376): a zip holding ``xl/workbook.xml`` (sheet list), ``xl/_rels/workbook.xml.rels`` (sheet -> part),
``xl/sharedStrings.xml`` (the string table) and ``xl/worksheets/sheetN.xml`` (cells). Reading the few cells we need
does not justify an Excel library dependency.
"""

from __future__ import annotations

import re
import zipfile
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import DataFormatError

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_DOC_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CELL_REF = re.compile(r"([A-Z]+)(\d+)")


def _column_index(letters: str) -> int:
    """'A' -> 0, 'Z' -> 25, 'AA' -> 26."""
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index - 1


def _text_of(item) -> str:
    """Text of a string item: its own ``<t>`` or the ``<t>`` of each rich-text run ``<r>``. Phonetic hints
    (``<rPh>``, East Asian reading aids) are not part of the text and are skipped."""
    parts = [item.find(f"{_MAIN}t")] + [run.find(f"{_MAIN}t") for run in item.findall(f"{_MAIN}r")]
    return "".join(t.text or "" for t in parts if t is not None)


def _first_sheet_part(archive: zipfile.ZipFile) -> str:
    """Zip member of the first sheet in workbook order (not necessarily ``sheet1.xml``)."""
    workbook = ET.fromstring(archive.read("xl/workbook.xml"))
    sheet = workbook.find(f"{_MAIN}sheets/{_MAIN}sheet")
    if sheet is None:
        raise KeyError("the workbook lists no sheet")
    rel_id = sheet.get(f"{_DOC_REL}id")
    rels = ET.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    for rel in rels.iter(f"{_PKG_REL}Relationship"):
        if rel.get("Id") == rel_id:
            target = rel.get("Target")
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    raise KeyError(f"no relationship {rel_id!r} for the first sheet")


def read_xlsx_rows(path: str | Path) -> list[list[str]]:
    """Cell texts of the first sheet, row by row, as strings (numbers as written in the file, e.g. ``'12'``).

    Empty cells inside a row are ``''``; rows keep their sheet order, gaps between row numbers are dropped.
    Raises :class:`DataFormatError` naming the file when it is not a readable workbook.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            shared = []
            if "xl/sharedStrings.xml" in names:
                table = ET.fromstring(archive.read("xl/sharedStrings.xml"))
                shared = [_text_of(item) for item in table.findall(f"{_MAIN}si")]
            sheet = ET.fromstring(archive.read(_first_sheet_part(archive)))
    except (zipfile.BadZipFile, KeyError, ET.ParseError) as e:
        raise DataFormatError(f"not a readable .xlsx workbook ({e})", file=path) from None

    rows = []
    for row in sheet.iter(f"{_MAIN}row"):
        cells: dict[int, str] = {}
        for position, cell in enumerate(row.findall(f"{_MAIN}c")):
            ref = _CELL_REF.fullmatch(cell.get("r", ""))
            column = _column_index(ref.group(1)) if ref else position
            kind = cell.get("t", "n")
            value = cell.find(f"{_MAIN}v")
            if kind == "inlineStr":
                inline = cell.find(f"{_MAIN}is")
                text = _text_of(inline) if inline is not None else ""
            elif value is None or value.text is None:
                continue
            elif kind == "s":
                index = int(value.text)
                if not 0 <= index < len(shared):
                    raise DataFormatError(
                        f"cell {cell.get('r')} points at shared string {index} of {len(shared)}", file=path
                    )
                text = shared[index]
            else:  # n (number), str (formula result), b (boolean), e (error): the stored text
                text = value.text
            cells[column] = text
        if cells:
            rows.append([cells.get(c, "") for c in range(max(cells) + 1)])
    return rows
