"""CSV for finance: any list endpoint that offers it answers `format=csv` or `Accept: text/csv`."""

import csv
import io
import re
from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter
from litestar.response import Response

Format = Annotated[str | None, QueryParameter(name="format", pattern="^(json|csv)$")]


def wants_csv(request: Request[Any, Any, Any], format_: str | None) -> bool:
    """`format=csv`, or an Accept header that prefers CSV."""
    if format_ is not None:
        return format_ == "csv"
    return "text/csv" in request.headers.get("accept", "")


def csv_response(body: str, filename: str) -> Response:
    return Response(
        body.encode(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# CSV injection (OWASP): a spreadsheet runs a cell that starts with one of these as a formula
# (`=cmd|' /C calc'!A0`, `+SUM(1,2)`, `@x`, `-2+3`; a tab or carriage return first hides one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What stays a number: a plain decimal, as amounts are written ("-1.500000000").
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def cell(value: object) -> object:
    """A value as a CSV cell: a text that a spreadsheet would run as a formula gets a leading single
    quote, which shows it as text; plain numbers (negative amounts included) stay numbers."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return value


def to_csv(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    # RFC 4180's CRLF: the writer quotes a field holding a character of its line terminator, so a
    # carriage return inside a text (which spreadsheets read as a line break) is quoted too.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([cell(name) for name in header])
    writer.writerows([cell(value) for value in row] for row in rows)
    return out.getvalue()
