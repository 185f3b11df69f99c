"""The GraphQL door over HTTP: Strawberry's aiohttp view, with persisted queries, operation
batching, GET caching and the answers' media types; and the door that the application mounts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeGuard, cast

from aiohttp import web
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from strawberry import Schema
from strawberry.aiohttp.views import GraphQLView
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.openapi import Contract
from gqlbatch.doors.caching import GET_ANSWER, GetAnswer, cached
from gqlbatch.doors.graphql.answer_types import AnswerTypes
from gqlbatch.doors.graphql.context import Context
from gqlbatch.doors.graphql.documents import QueryLimits
from gqlbatch.doors.graphql.graphiql import local_page, offline_notice
from gqlbatch.doors.graphql.persisted import PersistedQueries, PersistedQueryRefused
from gqlbatch.doors.graphql.schema import (
    answer_types,
    build_schema,
    cache_keys,
    documented_ids,
    possible_types,
)
from gqlbatch.doors.graphql.websockets import SOCKETS, SocketAdapter
from gqlbatch.doors.http import CONTEXT, NO_STORE, in_door_shape, invalid, read_json
from gqlbatch.doors.http_cache import vary
from gqlbatch.doors.identity import has_credentials
from gqlbatch.execution import metrics

GRAPHQL_RESPONSE = "application/graphql-response+json"


_HTTP_CODES = {405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.REQUEST_TOO_LARGE}


class BatchView(GraphQLView[Context, None]):
    """Strawberry's aiohttp view with a fresh gqlbatch `Context` per request."""

    def __init__(
        self,
        *,
        settings: Settings,
        persisted: PersistedQueries | None = None,
        answers: AnswerTypes | None = None,
    ) -> None:
        limits = QueryLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
            introspection=settings.introspection,
            max_select_paths=settings.max_select_paths,
        )
        super().__init__(
            schema=build_schema(
                limits,
                settings.max_operations,
                answers,
                trusted=None if persisted is None else persisted.trusted,
            ),
            graphql_ide="graphiql" if settings.graphiql else None,
            # A websocket is not covered by CORS: Strawberry refuses one whose Origin is
            # neither the gateway's own nor listed (cross-site websocket hijacking).
            allowed_origins=settings.cors.origins,
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_s),
            # A burst of operations on one websocket runs back to back on the loop: 2,000
            # follow requests over 20 websockets held it a second (issue 24).
            max_subscriptions_per_connection=settings.ws_max_operations,
        )
        self._settings = settings
        self._persisted = persisted or PersistedQueries(None)
        self._vary = vary(settings.forwarded_header_names())
        page = self.graphql_ide_html if settings.graphiql else ""
        self._ide_page = local_page(page) if settings.graphiql_assets_dir else offline_notice(page)

    websocket_adapter_class = SocketAdapter

    async def create_websocket_response(
        self, request: web.Request, subprotocol: str | None
    ) -> web.WebSocketResponse:
        # Counted per client and per address, and closed once idle (`doors.graphql.websockets`).
        context = request[CONTEXT]
        protocols = [subprotocol] if subprotocol else []
        return await request.app[SOCKETS].open(request, protocols, context.client, context.address)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if "Upgrade" in request.headers:
            try:
                return await self._answer(request)
            finally:
                request.app[SOCKETS].closed(request)
        return await self._answer(request)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        # Strawberry answers a request it cannot take (no query, a bad `variables`, PUT) with
        # its reason as plain text; here it is a GraphQL error with a code, as every other
        # refusal is.
        answer = None
        if request.method == "GET" and CONTEXT in request and "Upgrade" not in request.headers:
            # A read-only screen: cacheable, from what its batches' upstreams allowed.
            request[GET_ANSWER] = answer = GetAnswer()
            request[CONTEXT] = dataclasses.replace(_context(request), seen=answer.outcomes.append)
        try:
            response = await self.run(request=request)
        except HTTPException as exc:
            code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_INPUT)
            return in_door_shape(request, exc.status_code, code, exc.reason)
        if answer is None:
            return response
        credentials = has_credentials(request[CONTEXT].client)
        return cached(request, response, answer, credentials=credentials, vary=self._vary)

    async def process_result(self, request: web.Request, result: ExecutionResult) -> Any:
        answer = request.get(GET_ANSWER)
        if result.errors and answer is not None:
            answer.errors = True  # an answer with errors is never cached
        return await super().process_result(request, result)

    async def execute_single(
        self,
        request: web.Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: web.Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Persisted queries: the document a hash names, over GET or POST, per operation of
        # an operation batch; a refusal is that operation's answer, as Apollo's link reads it.
        try:
            document = await self._persisted.document(request_data.query, request_data.extensions)
        except PersistedQueryRefused as exc:
            metrics.refused(exc.code.value)
            error = GraphQLError(exc.message, extensions={"code": exc.code.value})
            return ExecutionResult(data=None, errors=[error])
        registering = document is request_data.query
        if not registering:
            request_data = dataclasses.replace(request_data, query=document)
        result = await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )
        # Kept once it has parsed and validated: a document that cannot run is never stored.
        if registering and (result.data is not None or not _request_errors(result.errors)):
            await self._persisted.register(document, request_data.extensions, context.client)
        return result

    async def render_graphql_ide(self, request: web.Request) -> web.Response:
        return web.Response(text=self._ide_page, content_type="text/html")

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET with a persisted-query hash has no `query` either; it wants its data, even
        # from a plain fetch(), whose Accept is */*.
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    async def reject_websocket(self, request: web.Request) -> web.Response:
        return in_door_shape(
            request,
            403,
            ErrorCode.FORBIDDEN_ORIGIN,
            f"a websocket from {request.headers.get('Origin')!r} is refused: only the "
            "gateway's own origin and those of [cors] origins may open one",
        )

    def is_websocket_request(self, request: web.Request) -> TypeGuard[web.Request]:
        # Strawberry builds a WebSocketResponse for every request to find out, a measurable
        # share of a small batch's CPU (BENCHMARKS.md); only a request that asks to upgrade
        # can be one.
        return "Upgrade" in request.headers and super().is_websocket_request(request)

    async def get_sub_response(self, request: web.Request) -> web.Response:
        # GraphQL over HTTP: a client that prefers application/graphql-response+json gets it,
        # with 400 for request errors (no data at all); application/json stays 200 throughout.
        response = web.Response(headers={"Cache-Control": NO_STORE})
        if _prefers_graphql_response(request.headers.get("Accept", "")):
            response.content_type = GRAPHQL_RESPONSE
        return response

    def decode_json(self, data: str | bytes) -> object:
        """A request body, or GET's `variables`, read strictly: a JSON object, or an array of
        them (operation batching: Apollo's BatchHttpLink, graphql-request's batchRequests), no
        deeper than max_json_depth, no NaN, no document over max_query_bytes (refused before
        parsing it), and no more operations than max_operations.

        Raises:
            BatchRejected: which the `front_door` middleware answers in GraphQL's shape.
        """
        settings = self._settings
        document = read_json(data, settings.max_json_depth)
        operations = document if isinstance(document, list) else [document]
        if not operations:
            raise invalid("an array of GraphQL operations needs at least one")
        if isinstance(document, list) and len(document) > settings.max_operations:
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.BATCH_TOO_LARGE,
                        f"{len(document)} operations in one request, over the limit of "
                        f"{settings.max_operations} (max_operations)",
                    )
                ]
            )
        for operation in operations:
            _check_operation(operation, settings.max_query_bytes)
        return document

    def create_response(self, response_data: Any, sub_response: web.Response) -> web.Response:
        media = sub_response.content_type
        if isinstance(response_data, list):  # a batch of operations: each is its own answer
            response_data = [_without_null_data(answer) for answer in response_data]
            return super().create_response(response_data, sub_response)
        request_error = _is_request_error(response_data)
        response_data = _without_null_data(response_data)
        response = super().create_response(response_data, sub_response)
        if media == GRAPHQL_RESPONSE:
            response.content_type = GRAPHQL_RESPONSE
            if request_error:
                response.set_status(400)
        return response

    async def get_context(self, request: web.Request, response: object) -> Context:
        context = _context(request)
        if isinstance(response, web.WebSocketResponse):
            # One context serves every operation of the connection: each operation gets a
            # budget of its own from OperationSetup, as each HTTP request does.
            return dataclasses.replace(context, budget=None)
        return context


def graphiql_page() -> str:
    """Strawberry's GraphiQL page, as its view serves it: loading its files from unpkg.com."""
    return GraphQLView(build_schema(), graphql_ide="graphiql").graphql_ide_html


def _context(request: web.Request) -> Context:
    """The request's context, as the front door made it for this door."""
    context = request[CONTEXT]
    assert isinstance(context, Context), "the front door makes /graphql's context a Context"
    return context


class GraphQLDoor:
    """`/graphql`. Its schema gains the answers' types once the upstreams' OpenAPI documents
    are read, which happens in a start-up hook (a document may be served by this very event
    loop), after the route was added; the route calls whichever view is current."""

    def __init__(self, settings: Settings, persisted: PersistedQueries) -> None:
        self._settings = settings
        self._persisted = persisted
        self.view = BatchView(settings=settings, persisted=persisted)
        self._mapped_view: BatchView | None = None
        self._maps: dict[Callable[[Schema], object], bytes] = {}

    def type_answers(self, contracts: Mapping[str, Contract]) -> None:
        """Serve the schema with the types of the answers *contracts* describe."""
        answers = answer_types(contracts, documented_ids(self._settings))
        self.view = BatchView(settings=self._settings, persisted=self._persisted, answers=answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.view(request)

    async def possible_types(self, request: web.Request) -> web.Response:
        """`GET /possible-types.json`: Apollo Client's `possibleTypes` for the schema served
        now (with the answers' types)."""
        return self._cache_map(possible_types)

    async def cache_keys(self, request: web.Request) -> web.Response:
        """`GET /graphcache-keys.json`: each object type's key field (or null), for urql's
        graphcache `keys`, for the schema served now."""
        return self._cache_map(cache_keys)

    def _cache_map(self, make: Callable[[Schema], object]) -> web.Response:
        # Worked out once per schema: the view changes once, when the answers are typed.
        view = self.view
        if view is not self._mapped_view:
            self._maps.clear()
            self._mapped_view = view
        body = self._maps.get(make)
        if body is None:
            body = self._maps[make] = json.dumps(make(cast(Schema, view.schema))).encode()
        return web.Response(body=body, content_type="application/json")


def _check_operation(operation: object, max_query_bytes: int) -> None:
    """Raises:
    BatchRejected: INVALID_INPUT for a non-object, REQUEST_TOO_LARGE for a long document."""
    if not isinstance(operation, dict):
        kind = "null" if operation is None else type(operation).__name__
        raise invalid(f'a GraphQL request is a JSON object such as {{"query": "..."}}, not {kind}')
    query = operation.get("query")
    if isinstance(query, str) and len(query.encode(errors="replace")) > max_query_bytes:
        raise BatchRejected(
            [
                Problem(
                    ErrorCode.REQUEST_TOO_LARGE,
                    f"the GraphQL document is over the {max_query_bytes}-byte limit "
                    "(max_query_bytes); pass large values as variables",
                    field="query",
                )
            ]
        )


def _prefers_graphql_response(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in (GRAPHQL_RESPONSE, "application/json"):
            return media == GRAPHQL_RESPONSE
    return False


def _without_null_data(answer: Any) -> Any:
    # A request that never reached execution (it did not parse or validate) has no `data`
    # entry at all (GraphQL spec, "Response Format"; graphql-http's audits D586 and 5E5B);
    # Strawberry writes `"data": null`. A field error keeps its data.
    if _is_request_error(answer):
        return {k: v for k, v in answer.items() if k != "data"}
    return answer


def _request_errors(errors: list[GraphQLError] | None) -> bool:
    """Whether *errors* are a request's (parse, validation), which carry no path."""
    return bool(errors) and all(not e.path for e in errors or ())


def _is_request_error(data: Any) -> bool:
    # Parse and validation errors carry no path; a field error (a rejected batch) has one.
    if not isinstance(data, dict) or data.get("data") is not None:
        return False
    return all(not e.get("path") for e in data.get("errors") or [])
