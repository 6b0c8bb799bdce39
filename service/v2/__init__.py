"""The Open Inference Protocol v2: tensors on the wire, the models as v2 sees them, its errors.
The routes are `service.routes.v2` and `service.routes.repository`."""
