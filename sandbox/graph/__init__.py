"""The Microsoft Graph v1.0 slice, by resource: requests are dispatched here from HTTP and ``$batch``.

:mod:`~sandbox.graph.pipeline` authenticates, injects faults and throttles every request;
:mod:`~sandbox.graph.routing` finds its handler among the routes that :mod:`~sandbox.graph.users`,
:mod:`~sandbox.graph.groups`, :mod:`~sandbox.graph.roles`, :mod:`~sandbox.graph.applications` and
:mod:`~sandbox.graph.consent` register; :mod:`~sandbox.graph.batch` runs ``$batch``;
:mod:`~sandbox.graph.query` holds the OData query options.
"""

from sandbox.graph.base import Caller, Faults, GraphError, GraphSettings, Request, Response
from sandbox.graph.pipeline import Graph

__all__ = ["Caller", "Faults", "Graph", "GraphError", "GraphSettings", "Request", "Response"]
