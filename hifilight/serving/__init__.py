"""The service's library side (serve/service.py is the BentoML shell around it), one module per concern:

- `settings`: `ServeSettings`, one field per environment variable;
- `requests`: the bounds a request is held to, `GuideRequest`, the request errors;
- `model`: `SubjectServer`, the loaded subjects, validation and (batched) generation;
- `learning`: `Learner`, fitting a new subject for the service;
- `gate`: the ASGI gate (body size, bearer token, one error shape) and the one-line client-error log filter;
- `process`: the service as a process (a worker that ends with its server; start / wait / stop for tests and
  benchmarks).
"""

from hifilight.serving.gate import OPEN_PATHS, ClientErrorFilter, RequestGate
from hifilight.serving.model import Loaded, SubjectServer, service_words, skip_reason
from hifilight.serving.process import exit_with_parent, start_service, stop_service, wait_ready
from hifilight.serving.requests import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, Cancelled, GuideRequest, RequestError
from hifilight.serving.settings import DINO_FOR, ServeSettings

__all__ = [
    "DINO_FOR",
    "MAX_GUIDANCE",
    "MAX_SEED",
    "MAX_STEPS",
    "OPEN_PATHS",
    "Cancelled",
    "ClientErrorFilter",
    "GuideRequest",
    "Loaded",
    "RequestError",
    "RequestGate",
    "ServeSettings",
    "SubjectServer",
    "exit_with_parent",
    "service_words",
    "skip_reason",
    "start_service",
    "stop_service",
    "wait_ready",
]
