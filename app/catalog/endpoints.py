import hashlib
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Response

from app.catalog import importer, repository, service, sync, views
from app.catalog.listings import Listings, ollama_models, openrouter_embeddings, openrouter_models
from app.catalog.model import Catalog, exact
from app.catalog.schemas import (
    AliasCreate,
    AliasList,
    AliasOut,
    CatalogModel,
    ImportResult,
    MarginList,
    MarginOut,
    MarginSet,
    ModelList,
    ModelResolution,
    ModelType,
    ModelUpsert,
    OllamaModelsAnswer,
    OpenAIModel,
    OpenAIModelList,
    OpenRouterEmbeddingsAnswer,
    OpenRouterModelsAnswer,
    PriceCreate,
    PriceVersionOut,
    Provider,
    ProviderCreate,
    ProviderList,
    ProviderUpdate,
    SyncRequest,
    SyncResult,
)
from app.catalog.sources import Upstreams
from app.catalog.store import CatalogStore
from app.clock import Clock
from app.db import Db
from app.errors import InvalidRequest, NotFound
from app.keys.schemas import Principal
from app.openapi import errors
from app.pagination import Page

AnyRequest = Request[Principal, str, Any]


def cached(request: AnyRequest, store: CatalogStore, key: tuple, render: Callable[[Catalog], Any]) -> Response:
    """A catalog view from this worker's memory, with an ETag; 304 when the client has it already."""
    finance = request.user.is_finance
    body, etag, gzipped = store.body(
        (*key, finance),
        lambda catalog: render(catalog, store.clock.now(), finance),
        gzipped=accepts_gzip(request.headers.get("accept-encoding", "")),
    )
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "Vary": "Accept-Encoding"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(content=b"", status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(content=body, media_type="application/json", headers=headers)


def uncached(request: AnyRequest, store: CatalogStore, render: Callable[[Catalog], Any]) -> Response:
    """A view rendered for this request alone (one model asked for by one of its many names: caching a
    body per name would let names fill the memory), with an ETag all the same."""
    body = views.ENCODER.encode(render(store.catalog, store.clock.now(), request.user.is_finance))
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether `Accept-Encoding` allows gzip: its q-value (`gzip`, else `x-gzip`, else `*`) is above 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    weight = float(param[2:])
                except ValueError:
                    weight = 0.0
        weights[coding] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def model_list(catalog: Catalog, models, now, finance: bool) -> ModelList:
    shown = [views.model_view(catalog, model, now, finance) for model in models]
    return ModelList(models=shown, total=len(shown))


def listed(catalog: Catalog):
    """Models of configured providers; a disabled provider's models are not offered."""
    return (m for m in catalog.models.values() if catalog.providers[m.row.provider].enabled)


def model_id_of(raw: str) -> str:
    # `{model_id:path}` arrives with a leading slash; `%2F` is already decoded to `/`.
    return raw.lstrip("/")


def ok(model: type) -> dict[int, ResponseSpec]:
    """The answers of a `cached` view. No generated examples: they would be random, and the document would
    change at every start."""
    return {
        200: ResponseSpec(data_container=model, description="Request fulfilled", generate_examples=False),
        304: ResponseSpec(data_container=None, description="Not modified: `If-None-Match` names the current ETag"),
    }


class ModelController(Controller):
    path = "/models"
    tags = ["catalog"]
    opt = {"scope": "catalog:read"}

    @get("/", responses=ok(ModelList))
    async def list_models(
        self,
        request: AnyRequest,
        catalog_store: NamedDependency[CatalogStore],
        provider: FromQuery[str | None] = None,
        type: FromQuery[ModelType | None] = None,
        supports_tools: FromQuery[bool | None] = None,
        supports_vision: FromQuery[bool | None] = None,
    ) -> Response:
        """The catalog with credit prices (margin included), filtered by provider, type and capability."""

        def render(catalog: Catalog, now, finance):
            models = [
                m
                for m in listed(catalog)
                if (provider is None or m.row.provider == provider)
                and (type is None or m.row.type == type)
                and (supports_tools is None or bool(m.row.supports_tools) == supports_tools)
                and (supports_vision is None or bool(m.row.supports_vision) == supports_vision)
            ]
            return model_list(catalog, models, now, finance)

        return cached(request, catalog_store, ("models", provider, type, supports_tools, supports_vision), render)

    @get("/providers", responses=ok(ProviderList))
    async def list_providers(self, request: AnyRequest, catalog_store: NamedDependency[CatalogStore]) -> Response:
        """Providers, whether each is configured, and their model counts."""
        return cached(
            request, catalog_store, ("providers",), lambda catalog, now, finance: views.provider_list(catalog)
        )

    @get("/embedding", responses=ok(ModelList))
    async def list_embedding_models(
        self, request: AnyRequest, catalog_store: NamedDependency[CatalogStore]
    ) -> Response:
        """Embedding models with their `dimensions` and `max_input_tokens`."""

        def render(catalog: Catalog, now, finance):
            return model_list(catalog, [m for m in listed(catalog) if m.embedding], now, finance)

        return cached(request, catalog_store, ("embedding",), render)

    @get("/embedding/{model_id:path}", responses=ok(CatalogModel))
    async def get_embedding_model(
        self, request: AnyRequest, catalog_store: NamedDependency[CatalogStore], model_id: FromPath[str]
    ) -> Response:
        """One embedding model; ids contain a slash, raw or `%2F`-encoded."""
        model = catalog_store.catalog.require_available(model_id_of(model_id))
        if not model.embedding:
            raise NotFound(f"'{model.id}' is not an embedding model", code="model_not_found", param="model")
        return self._one(request, catalog_store, model.id)

    @get("/resolve", responses=errors(404) | {200: ok(ModelResolution)[200]})
    async def resolve_model(
        self,
        request: AnyRequest,
        catalog: NamedDependency[Catalog],
        clock: NamedDependency[Clock],
        model: FromQuery[str],
        provider: FromQuery[str | None] = None,
    ) -> Response:
        """Which catalog model a reported model string names (given the provider that served the call), and by
        which rule: how usage events, estimates and holds read it."""
        resolution = catalog.resolution(model, provider)
        found = catalog.models[resolution.model_id]
        answer = ModelResolution(
            query=model,
            provider_hint=provider,
            model=found.id,
            provider=found.provider,
            rule=resolution.rule,
            matched=resolution.matched,
            details=views.model_view(catalog, found, clock.now(), request.user.is_finance),
        )
        # The model's rates are JSON numbers, digit for digit, as in every catalog view.
        return Response(content=views.ENCODER.encode(answer), media_type="application/json")

    @get("/{model_id:path}", responses=ok(CatalogModel))
    async def get_model(
        self,
        request: AnyRequest,
        catalog_store: NamedDependency[CatalogStore],
        model_id: FromPath[str],
        provider: FromQuery[str | None] = None,
    ) -> Response:
        """One model by id (`openai/gpt-4o`, raw or `%2F`-encoded) or by any name that resolves to it (an alias, a
        dated snapshot, a provider's wrapped id); then `id` is the name asked for and `root` the model's id."""
        name = model_id_of(model_id)
        model = catalog_store.catalog.require_available(name, provider)
        if model.id == name:
            return self._one(request, catalog_store, model.id)

        def render(catalog: Catalog, now, finance):
            view = views.model_view(catalog, catalog.models[model.id], now, finance)
            return msgspec.structs.replace(view, id=name, root=model.id)

        return uncached(request, catalog_store, render)

    @staticmethod
    def _one(request: AnyRequest, store: CatalogStore, model_id: str) -> Response:
        def render(catalog: Catalog, now, finance):
            return views.model_view(catalog, catalog.models[model_id], now, finance)

        return cached(request, store, ("model", model_id), render)


class OpenAIModelController(Controller):
    path = "/v1/models"
    tags = ["catalog"]
    opt = {"scope": "catalog:read"}

    @get("/", responses=ok(OpenAIModelList))
    async def list_openai_models(self, request: AnyRequest, catalog_store: NamedDependency[CatalogStore]) -> Response:
        """OpenAI-compatible model list (`object`, `id`, `created`, `owned_by`, plus pricing)."""

        def render(catalog: Catalog, now, finance):
            data = [views.openai_view(views.model_view(catalog, m, now, finance)) for m in listed(catalog)]
            return OpenAIModelList(object="list", data=data)

        return cached(request, catalog_store, ("v1",), render)

    @get("/{model_id:path}", responses=ok(OpenAIModel))
    async def get_openai_model(
        self,
        request: AnyRequest,
        catalog_store: NamedDependency[CatalogStore],
        model_id: FromPath[str],
        provider: FromQuery[str | None] = None,
    ) -> Response:
        """OpenAI-compatible retrieve of one model by id or by any name that resolves to it; by another name,
        `id` is the name asked for and `root` the model's id."""
        name = model_id_of(model_id)
        model_id = catalog_store.catalog.require_available(name, provider).id

        def render(catalog: Catalog, now, finance):
            view = views.openai_view(views.model_view(catalog, catalog.models[model_id], now, finance))
            return view if name == model_id else msgspec.structs.replace(view, id=name)

        if name != model_id:
            return uncached(request, catalog_store, render)
        return cached(request, catalog_store, ("v1", model_id), render)


class CatalogAdminController(Controller):
    """Catalog writes. Each refreshes this worker's copy before answering; the others follow
    within milliseconds (LISTEN/NOTIFY)."""

    path = "/catalog"
    tags = ["catalog admin"]
    opt = {"scope": "admin"}

    @post("/providers", status_code=201, responses=errors(409))
    async def create_provider(
        self, db: Db, catalog_store: NamedDependency[CatalogStore], data: JSONBody[ProviderCreate]
    ) -> Provider:
        """Add a provider (enabled unless `enabled` is false)."""
        async with db.begin() as conn:
            await service.create_provider(conn, data)
        return await self._provider(catalog_store, data.id)

    @patch("/providers/{provider_id:str}")
    async def update_provider(
        self,
        db: Db,
        catalog_store: NamedDependency[CatalogStore],
        provider_id: FromPath[str],
        data: JSONBody[ProviderUpdate],
    ) -> Provider:
        """Enable or disable a provider (its models answer `provider_not_configured`), or rename it."""
        async with db.begin() as conn:
            await service.update_provider(conn, provider_id, data)
        return await self._provider(catalog_store, provider_id)

    @put("/models", responses=errors(404, 409))
    async def upsert_model(
        self,
        db: Db,
        catalog_store: NamedDependency[CatalogStore],
        clock: NamedDependency[Clock],
        data: JSONBody[ModelUpsert],
    ) -> CatalogModel:
        """Create or update a model's metadata (`provider/name` is its id); prices are separate versions."""
        async with db.begin() as conn:
            model_id = await service.upsert_model(conn, catalog_store.catalog, data, clock.now())
        catalog = await catalog_store.refresh()
        return views.model_view(catalog, catalog.models[model_id], clock.now(), finance=True)

    @post("/prices", status_code=201, responses=errors(404, 409))
    async def add_price(
        self,
        db: Db,
        catalog_store: NamedDependency[CatalogStore],
        clock: NamedDependency[Clock],
        data: JSONBody[PriceCreate],
    ) -> PriceVersionOut:
        """Add a price version (upstream USD per 1M tokens) effective now or later; history is kept."""
        async with db.begin() as conn:
            price = await service.add_price(conn, catalog_store.catalog, data, clock.now())
        await catalog_store.refresh()
        return price

    @get("/prices", opt={"scope": "ledger:read"}, responses=errors(404))
    async def price_history(
        self, db: Db, catalog: NamedDependency[Catalog], model: FromQuery[str]
    ) -> Page[PriceVersionOut]:
        """Every price version of a model, oldest first."""
        model_id = catalog.require(model).id
        async with db.connect() as conn:
            rows = await repository.price_history(conn, [model_id])
        return Page(data=[service.price_out(row) for row in rows], next_cursor=None)

    @put("/margins", status_code=201, responses=errors(404, 409))
    async def set_margin(
        self,
        db: Db,
        catalog_store: NamedDependency[CatalogStore],
        clock: NamedDependency[Clock],
        data: JSONBody[MarginSet],
    ) -> MarginOut:
        """Override the default margin for a provider or a model from now (or a later time) on."""
        async with db.begin() as conn:
            margin = await service.set_margin(conn, catalog_store.catalog, data, clock.now())
        await catalog_store.refresh()
        return margin

    @get("/margins", opt={"scope": "ledger:read"})
    async def list_margins(self, db: Db, catalog_store: NamedDependency[CatalogStore]) -> MarginList:
        """The default margin and every provider and model override, oldest first."""
        async with db.connect() as conn:
            rows = await repository.margin_history(conn)
        return MarginList(
            default_margin=exact(catalog_store.default_margin), margins=[service.margin_out(r) for r in rows]
        )

    @post("/aliases", status_code=201, responses=errors(404, 409))
    async def add_alias(
        self, db: Db, catalog_store: NamedDependency[CatalogStore], data: JSONBody[AliasCreate]
    ) -> Response[AliasOut]:
        """Name a catalog model by a string only the operator knows (an Azure deployment name, a private
        fine-tune), for every provider or, with `provider`, for calls that provider served. Unrated usage
        reported under that name is then rated."""
        async with db.begin() as conn:
            alias, created = await service.put_alias(conn, catalog_store.catalog, data)
        await catalog_store.refresh()
        return Response(alias, status_code=201 if created else 200)

    @get("/aliases", opt={"scope": "catalog:read"}, responses=errors(404))
    async def list_aliases(
        self,
        db: Db,
        catalog: NamedDependency[Catalog],
        model: FromQuery[str | None] = None,
        source: FromQuery[Literal["catalog", "operator"] | None] = None,
    ) -> AliasList:
        """Aliases, of one model or all, from the catalog data or the operator."""
        model_id = catalog.require(model).id if model else None
        async with db.connect() as conn:
            rows = await repository.list_aliases(conn, model_id, source)
        return AliasList(aliases=[service.alias_out(row) for row in rows])

    @delete("/aliases/{alias:path}", status_code=204, responses=errors(409))
    async def delete_alias(
        self,
        db: Db,
        catalog_store: NamedDependency[CatalogStore],
        alias: FromPath[str],
        provider: FromQuery[str | None] = None,
    ) -> None:
        """Delete an operator's alias (of every provider, or of `provider`'s calls); catalog aliases stay."""
        async with db.begin() as conn:
            await service.delete_alias(conn, model_id_of(alias), provider)
        await catalog_store.refresh()

    @post("/import", status_code=200)
    async def import_default(
        self, db: Db, catalog_store: NamedDependency[CatalogStore], clock: NamedDependency[Clock]
    ) -> ImportResult:
        """Load the bundled default catalog: new models and changed prices are added, nothing is rewritten."""
        async with db.begin() as conn:
            result = await importer.import_catalog(
                conn, importer.read_catalog(), at=clock.now(), label=str(importer.DEFAULT_CATALOG.name)
            )
        await catalog_store.refresh()
        return result

    @post("/sync", status_code=200)
    async def sync_catalog(
        self,
        db: Db,
        catalog_store: NamedDependency[CatalogStore],
        clock: NamedDependency[Clock],
        upstreams: NamedDependency[Upstreams],
        sync_sources: NamedDependency[tuple[str, ...]],
        data: JSONBody[SyncRequest],
    ) -> SyncResult:
        """Sync from upstream (OpenRouter, the local Ollama, a LiteLLM price file, the installed genai-prices):
        new models added, changed prices as new versions, vanished models deprecated. `dry_run`: the diff only."""
        names = data.sources or sync_sources
        if "litellm" in names and not (data.litellm_url or upstreams.litellm):
            raise InvalidRequest("The litellm source needs `litellm_url` (or LITELLM_PRICES)", param="litellm_url")
        async with db.connect() as conn:
            result = await sync.sync_catalog(
                conn,
                upstreams,
                names,
                at=clock.now(),
                dry_run=data.dry_run,
                curated=data.curated,
                litellm=data.litellm_url,
            )
        if not data.dry_run:
            await catalog_store.refresh()
        return result

    @staticmethod
    async def _provider(store: CatalogStore, provider_id: str) -> Provider:
        catalog = await store.refresh()
        return next(p for p in views.provider_list(catalog).providers if p.id == provider_id)


Curated = Annotated[
    bool,
    QueryParameter(description="The curated list, priced by the catalog, without asking OpenRouter"),
]


class ModelListingController(Controller):
    """Model pickers in the shapes front ends already read: OpenRouter's models and embedding models, live with
    OPENROUTER_API_KEY (else curated), and the local Ollama's inference models (app/catalog/listings.py)."""

    path = "/api/models"
    tags = ["model pickers"]
    opt = {"scope": "catalog:read"}

    @get("/openrouter")
    async def openrouter_models(
        self,
        listings: NamedDependency[Listings],
        catalog: NamedDependency[Catalog],
        upstreams: NamedDependency[Upstreams],
        clock: NamedDependency[Clock],
        curated: Curated = False,
    ) -> OpenRouterModelsAnswer:
        """OpenRouter's language models with USD prices per token, margin included; `source` says where from."""
        data = await openrouter_models(listings, catalog, upstreams, clock.now(), curated=curated)
        return OpenRouterModelsAnswer(success=True, data=data)

    @get("/openrouter/embeddings")
    async def openrouter_embeddings(
        self,
        listings: NamedDependency[Listings],
        catalog: NamedDependency[Catalog],
        upstreams: NamedDependency[Upstreams],
        clock: NamedDependency[Clock],
        curated: Curated = False,
    ) -> OpenRouterEmbeddingsAnswer:
        """OpenRouter's embedding models with `dimensions` and USD `cost_per_million`, margin included."""
        data = await openrouter_embeddings(listings, catalog, upstreams, clock.now(), curated=curated)
        return OpenRouterEmbeddingsAnswer(success=True, data=data)

    @get("/ollama")
    async def ollama_models(
        self,
        listings: NamedDependency[Listings],
        catalog: NamedDependency[Catalog],
        upstreams: NamedDependency[Upstreams],
    ) -> OllamaModelsAnswer:
        """The local Ollama server's inference models; `ollama_unreachable` with `error` when it does not answer."""
        data = await ollama_models(listings, catalog, upstreams)
        return OllamaModelsAnswer(success=True, data=data)
