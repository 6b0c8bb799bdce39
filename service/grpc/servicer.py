"""The RPCs of `inference.GRPCInferenceService`, answered by the same code as the REST routes
(`service.v2`): the same models, batchers and checks, so both protocols give the same answers
and the same errors."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from service.errors import NotFound, ServiceError
from service.grpc import grpc_predict_v2_pb2 as pb
from service.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from service.grpc.calls import Calls, within_deadline
from service.grpc.tensors import parameters, read_request, write_response
from service.runtime import Runtime
from service.v2 import catalog, inference, repository

Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def rpc(
    *, protected: bool = True, admitted: bool = False, stream: bool = False
) -> Callable[[Method], Method]:
    """Runs the method through `Calls.run`: `protected` calls need the API key, `admitted`
    ones (those that carry work) take a place of the in-flight limit, a `stream` takes one
    for each of its requests instead."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        async def call(self: InferenceServicer, request: Any, context: Any) -> Any:
            work = functools.partial(method, self, request, context)
            name = method.__name__
            return await self.calls.run(name, context, work, protected, admitted, stream)

        return call

    return decorate


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runtime: Runtime, calls: Calls, version: str) -> None:
        self.runtime = runtime
        self.calls = calls
        self.version = version

    @rpc(protected=False)
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    @rpc(protected=False)
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    @rpc(protected=False)
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        return pb.ServerMetadataResponse(
            name=catalog.SERVER_NAME, version=self.version, extensions=catalog.EXTENSIONS
        )

    @rpc()
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        """Ready or not, never an error: what Triton answers for a model it does not have."""
        try:
            catalog.find_serving(self.runtime, request.name, request.version or None)
        except ServiceError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @rpc()
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        view = catalog.find_serving(self.runtime, request.name, request.version or None)
        metadata = await inference.metadata(view)
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[tensors(**spec) for spec in metadata["inputs"]],
            outputs=[tensors(**spec) for spec in metadata["outputs"]],
        )

    @rpc(admitted=True)
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        return await self._infer(request)

    @rpc(stream=True)
    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> Any:
        """Each request of the stream runs as soon as it arrives and is answered when done,
        its failure as the answer's `error_message`; the stream ends once every request it
        brought is answered."""
        writing = asyncio.Lock()

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                with self.calls.place():
                    work = functools.partial(self._infer, request)
                    answered = await within_deadline(work, self.calls.deadline_s, None)
                response = pb.ModelStreamInferResponse(infer_response=answered)
            except ServiceError as error:
                response = pb.ModelStreamInferResponse(
                    error_message=error.message,
                    infer_response=pb.ModelInferResponse(
                        model_name=request.model_name, id=request.id
                    ),
                )
            async with writing:
                await context.write(response)

        async with asyncio.TaskGroup() as answers:
            async for request in requests:
                answers.create_task(answer(request))

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        view = catalog.find_serving(self.runtime, request.model_name, request.model_version or None)
        parsed = read_request(request)
        runtime = self.runtime
        outputs = await inference.infer(view, parsed, runtime.settings, runtime.decoder)
        return write_response(view.name, view.version, parsed.id, outputs)

    @rpc()
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> Any:
        entries = repository.index(self.runtime, request.ready)
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(
                    name=entry.name,
                    version=entry.version or "",
                    state=entry.state,
                    reason=entry.reason,
                )
                for entry in entries
            ]
        )

    @rpc(admitted=True)
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> Any:
        name = _model_name(request)
        await repository.load(self.runtime, name, parameters(request.parameters))
        return pb.RepositoryModelLoadResponse(model_name=name, loaded=True)

    @rpc(admitted=True)
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> Any:
        """Its parameters (Triton's `unload_dependents`) change nothing: `vae-decoder`, the one
        dependent model, always goes with `vae`."""
        name = _model_name(request)
        await self.runtime.unload(name)
        return pb.RepositoryModelUnloadResponse(model_name=name, unloaded=True)


def _model_name(request: pb.RepositoryModelLoadRequest | pb.RepositoryModelUnloadRequest) -> str:
    """Triton's clients send the model name in field 2, KServe's in field 1 (see the proto)."""
    name = request.model_name or request.repository_name
    if not name:
        raise NotFound("no model name in the request")
    return name
