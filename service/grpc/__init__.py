"""The Open Inference Protocol v2 over gRPC, on its own port (FMNIST_GRPC_PORT), beside the REST
API in every worker: the same runtime (models, batchers, limits, API key, deadline) behind both.

`grpc_predict_v2.proto` defines the service; the `*_pb2*` modules are generated from it. The
server (`service.grpc.server`) runs in the worker's event loop, `service.grpc.servicer` answers
the RPCs through `service.v2`, and `service.grpc.status` maps the service's errors to gRPC
status codes.
"""
