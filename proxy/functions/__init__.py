"""Edge functions: Python callables named in a behaviour (``functions.<event>: package.module:function``)
that the pipeline runs at four events (viewer_request, origin_request, origin_response, viewer_response).

``api`` holds what a function receives and returns, ``loader`` finds functions and calls them within a
time bound, ``bridge`` is the pipeline's side (one call per event), ``device`` classifies User-Agents.
docs/edge-functions.md is the guide.
"""

from proxy.functions.api import (
    COUNTRY_HEADER,
    Event,
    ReadOnlyError,
    RequestInfo,
    Response,
    ViewerRequest,
    json_response,
    redirect,
    respond,
)
from proxy.functions.device import DEVICE_CLASSES, DEVICE_HEADER, DeviceClass, classify_device
from proxy.functions.loader import (
    DEFAULT_TIMEOUT,
    FunctionError,
    FunctionLoadError,
    FunctionSet,
    LoadProblem,
    resolve,
)

__all__ = [
    "COUNTRY_HEADER",
    "DEFAULT_TIMEOUT",
    "DEVICE_CLASSES",
    "DEVICE_HEADER",
    "DeviceClass",
    "Event",
    "FunctionError",
    "FunctionLoadError",
    "FunctionSet",
    "LoadProblem",
    "ReadOnlyError",
    "RequestInfo",
    "Response",
    "ViewerRequest",
    "classify_device",
    "json_response",
    "redirect",
    "resolve",
    "respond",
]
