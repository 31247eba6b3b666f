from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.catalog.model import Catalog
from app.clock import Clock
from app.db import Db
from app.errors import Forbidden, InvalidRequest
from app.estimates import service
from app.estimates.schemas import Comparison, Estimate, EstimateIn
from app.keys.schemas import Principal
from app.openapi import errors
from app.usage import reported


class EstimateController(Controller):
    path = "/estimate"
    tags = ["estimates"]

    @post("/", opt={"scope": "catalog:read"}, status_code=200, responses=errors(404, 422))
    async def estimate(
        self,
        request: Request[Principal, str, Any],
        db: Db,
        catalog: NamedDependency[Catalog],
        clock: NamedDependency[Clock],
        data: JSONBody[EstimateIn],
    ) -> Estimate | Comparison:
        """Price a call without recording it; `models` compares the same call across models, cheapest first."""
        reported.check_counts(await request.json())
        if (data.model is None) == (data.models is None):
            raise InvalidRequest("Give either `model` or `models`", param="model")
        now, finance = clock.now(), request.user.is_finance
        usage = service.usage_of(data)
        call = {"provider": data.provider, "service_tier": data.service_tier, "region": data.region}
        if data.model is not None:
            result, _ = service.estimate(catalog, data.model, usage, now, finance=finance, **call)
            estimates = [result]
        else:
            result = service.compare(catalog, data.models, usage, now, finance=finance, **call)
            estimates = result.estimates
        if data.account_id is not None or request.user.account_id is not None:
            if request.user.account_id is None and not (
                request.user.has("ledger:read") or request.user.has("usage:write")
            ):
                # A balance is ledger data: a catalog-only key acting for any account may not read one.
                raise Forbidden("Checking an account's funds needs the `ledger:read` or `usage:write` scope")
            async with db.connect() as conn:
                await service.add_funds(conn, estimates, request.user.account(data.account_id), now)
        return result
