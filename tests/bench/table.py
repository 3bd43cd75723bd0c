"""Reading the plain-text tables ``pymbrl bench`` prints."""

from __future__ import annotations

import re


def cells(out: str, header: str, row: str) -> dict[str, str]:
    """The cells, by column name, of the first line of ``out`` matching the regex ``row``, in the
    table whose header line starts with ``header`` (columns are separated by two or more spaces)."""
    lines = out.splitlines()
    columns = re.split(r"\s{2,}", next(line for line in lines if line.startswith(header)))
    return dict(zip(columns, re.split(r"\s{2,}", next(line for line in lines if re.match(row, line)))))
