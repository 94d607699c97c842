"""JSON-RPC and MCP result helpers shared by the conformance fixture's modules."""


class RpcError(Exception):
    """A JSON-RPC error the fixture answers with."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def text(t):
    """A tool result with one text block."""
    return {"content": [{"type": "text", "text": t}]}


def elicit_request(message, props, required):
    """An `elicitation/create` input request (form mode)."""
    return {"method": "elicitation/create", "params": {"mode": "form", "message": message, "requestedSchema": {
        "type": "object", "properties": props, "required": required}}}


def input_required(requests, state=None):
    """A 2026-07-28 `InputRequiredResult` (MRTR)."""
    r = {"resultType": "input_required", "inputRequests": requests}
    if state is not None:
        r["requestState"] = state
    return r


def answer(responses, key):
    """The client's answer under `key`, if it is a well-formed result object."""
    if not isinstance(responses, dict):
        return None
    value = responses.get(key)
    return value if isinstance(value, dict) else None


def check_responses(params):
    """The request's `inputResponses` (an object), or an empty one."""
    responses = params.get("inputResponses")
    if "inputResponses" in params and not isinstance(responses, dict):
        raise RpcError(-32602, "inputResponses must be an object")
    return responses or {}
