"""CSV for finance: any list endpoint that offers it answers `format=csv` or `Accept: text/csv`."""

import csv
import io
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


def to_csv(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return out.getvalue()
