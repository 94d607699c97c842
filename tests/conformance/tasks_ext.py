"""The 2026-07-28 tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`) for the modern fixture.

The server decides which calls become tasks: a tool with task support `optional` or `required`
called by a client that declared the extension (for the session or in the request's `_meta`)
returns a flat `CreateTaskResult`; without the extension an `optional` tool runs synchronously
and a `required` one is refused with -32021. `tasks/get` inlines the result (`completed`,
including tool errors with `isError`) or the JSON-RPC error (`failed`, protocol errors);
a task waiting for input is `input_required` with its pending `inputRequests`, answered one or
several at a time with `tasks/update`; `tasks/cancel` settles a running task to `cancelled` and
acknowledges terminal ones alike. The tool names are the conformance suite's fixtures.
"""

import asyncio
import datetime
import uuid

from rpc import RpcError, answer, check_responses, elicit_request, input_required, text

EXTENSION = "io.modelcontextprotocol/tasks"
TTL_MS = 10 * 60 * 1000
POLL_INTERVAL_MS = 100
TERMINAL = ("completed", "failed", "cancelled")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _name_of(response):
    return (response.get("content") or {}).get("name", "unknown")


async def _slow_compute(args, answers):
    seconds = args.get("seconds", 0)
    await asyncio.sleep(float(seconds) if isinstance(seconds, (int, float)) else 0)
    return text(f"Computed {args.get('label', 'result')} after {seconds}s")


async def _failing_job(args, answers):
    return {"isError": True, "content": [{"type": "text", "text": "The job ran and reported a failure"}]}


async def _protocol_error_job(args, answers):
    raise RpcError(-32603, "Internal error: the job's worker crashed")


async def _confirm_delete(args, answers):
    accepted = answers["confirm"].get("action") == "accept"
    return text(f"{'Deleted' if accepted else 'Kept'} {args.get('filename', 'the file')}")


async def _multi_input(args, answers):
    return text(f"Received {_name_of(answers['first'])} and {_name_of(answers['second'])}")


async def _greet_gathered(args, answers):
    return text(f"Hello, {_name_of(answers['user_name'])}!")


class Job:
    """A task-capable tool: its task support, the inputs it needs (asked for inside the task, or
    by MRTR before the task is created) and what it does with them."""

    def __init__(self, support, props, run, inputs=None, gather="task"):
        self.support, self.props, self.run = support, props, run
        self.inputs, self.gather = inputs or (lambda args: {}), gather


JOBS = {
    "slow_compute": Job("optional", {"seconds": {"type": "number"}, "label": {"type": "string"}}, _slow_compute),
    "failing_job": Job("required", {}, _failing_job),
    "protocol_error_job": Job("optional", {}, _protocol_error_job),
    "confirm_delete": Job("optional", {"filename": {"type": "string"}}, _confirm_delete, inputs=lambda args: {
        "confirm": elicit_request(f"Delete {args.get('filename', 'the file')}?", {"confirm": {"type": "boolean"}},
                                  ["confirm"])}),
    "multi_input": Job("optional", {}, _multi_input, inputs=lambda args: {
        "first": elicit_request("First name?", {"name": {"type": "string"}}, ["name"]),
        "second": elicit_request("Second name?", {"name": {"type": "string"}}, ["name"])}),
    "test_tool_with_task": Job("required", {}, _greet_gathered, gather="mrtr", inputs=lambda args: {
        "user_name": elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"])}),
}


def tool_list():
    """The extension's fixture tools, `greet` (synchronous only) first."""
    tools = [{"name": "greet", "description": "Says hello (never a task)",
              "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}]
    for name, job in JOBS.items():
        tools.append({"name": name, "description": f"Tasks extension fixture ({job.support} task support)",
                      "inputSchema": {"type": "object", "properties": job.props},
                      "execution": {"taskSupport": job.support}})
    return tools


def declared(params):
    """Whether the request's client capabilities declare the extension."""
    caps = (params.get("_meta") or {}).get("io.modelcontextprotocol/clientCapabilities") or {}
    return isinstance(caps.get("extensions"), dict) and EXTENSION in caps["extensions"]


def _missing_extension():
    return RpcError(-32021, f"Missing required client capability: extension {EXTENSION}",
                    {"requiredCapabilities": {"extensions": {EXTENSION: {}}}})


class Task:
    def __init__(self, job, args, answers):
        self.id = str(uuid.uuid4())
        self.status, self.created = "working", _now()
        self.updated = self.created
        self.result = self.error = None
        self.pending, self.answers = {}, dict(answers)
        self.answered = asyncio.Event()
        self.runner = asyncio.create_task(self._run(job, args))

    def _set(self, status):
        self.status, self.updated = status, _now()

    async def _run(self, job, args):
        try:
            if job.gather == "task":
                self.pending = job.inputs(args)
                if self.pending:
                    self._set("input_required")
                    await self.answered.wait()
                    self._set("working")
            self.result = await job.run(args, self.answers)
            self._set("completed")
        except RpcError as e:
            self.error = {"code": e.code, "message": e.message}
            self._set("failed")
        except asyncio.CancelledError:
            self._set("cancelled")

    def envelope(self):
        return {"taskId": self.id, "status": self.status, "createdAt": self.created, "lastUpdatedAt": self.updated,
                "ttlMs": TTL_MS, "pollIntervalMs": POLL_INTERVAL_MS}

    def detailed(self):
        out = self.envelope()
        if self.status == "completed":
            out["result"] = self.result
        elif self.status == "failed":
            out["error"] = self.error
        elif self.status == "input_required":
            out["inputRequests"] = dict(self.pending)
        return out

    def update(self, responses):
        for key, value in responses.items():
            if key in self.pending and isinstance(value, dict):
                del self.pending[key]
                self.answers[key] = value
        if not self.pending:
            self.answered.set()

    def cancel(self):
        if self.status not in TERMINAL:
            self.runner.cancel()
            self._set("cancelled")


TASKS = {}


async def call_tool(name, params):
    """`tools/call` for the extension's tools; `None` for any other tool."""
    args = params.get("arguments") or {}
    if name == "greet":
        return text(f"Hello, {args.get('name', 'World')}!")
    job = JOBS.get(name)
    if job is None:
        return None
    with_tasks = declared(params)
    if job.support == "required" and not with_tasks:
        raise _missing_extension()
    answers = {}
    wanted = job.inputs(args) if job.gather == "mrtr" or not with_tasks else {}
    if wanted:
        responses = check_responses(params)
        answers = {k: answer(responses, k) for k in wanted}
        missing = {k: r for k, r in wanted.items() if answers[k] is None}
        if missing:
            return input_required(missing)
    if not with_tasks:
        return await job.run(args, answers)
    task = Task(job, args, answers)
    TASKS[task.id] = task
    return {"resultType": "task", **task.envelope()}


def _task(params):
    if not declared(params):
        raise _missing_extension()
    task = TASKS.get(params.get("taskId"))
    if task is None:
        raise RpcError(-32602, f"Unknown task: {params.get('taskId')}")
    return task


def handle(method, params):
    """`tasks/get`, `tasks/update` and `tasks/cancel`; `None` for any other method."""
    if method == "tasks/get":
        return _task(params).detailed()
    if method == "tasks/update":
        responses = check_responses(params)
        _task(params).update(responses)
        return {}
    if method == "tasks/cancel":
        _task(params).cancel()
        return {}
    return None
