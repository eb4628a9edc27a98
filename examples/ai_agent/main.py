"""An AI agent whose model and tool calls are durable steps against a slow, flaky, paid API.

python main.py                # run (or resume) the agent
python main.py tail           # in another terminal: follow its progress stream
python main.py approve        # ... and approve the booking (--deny to refuse it)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import fake_service
import httpx

import durably

AGENT_ID = "trip-agent-1"  # fixed: running again resumes this agent, it starts no other
TASK = "Plan a 3-night trip from Lisbon to Berlin on 2026-12-20 and book it."
NEEDS_APPROVAL = {"book_trip"}  # tools a human must approve first
MAX_CALLS = 20  # the agent's budget: paid calls ...
MAX_CENTS = 80  # ... and money
TIMEOUT = 0.25  # seconds per call: durably has no step timeout, so the HTTP client has one

# A fixed executor ID: after a crash, the restarted process takes its own unfinished
# workflows back at once instead of waiting for the dead process's lease to run out.
app = durably.App(executor_id="ai-agent-example")
service = {"url": ""}  # the fake API's address, new in every process


def retryable(exc: BaseException) -> bool:
    """Retry timeouts, broken connections and 5xx answers; a 4xx would fail again."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)  # timeouts included


def paid_call(path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST to the API; the step's key makes a repeated request (a retry whose first try
    the service did finish, or a rerun after a crash) cost nothing twice."""
    headers = {"Idempotency-Key": durably.step_key()}
    answer = httpx.post(service["url"] + path, json=payload, headers=headers, timeout=TIMEOUT)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


RETRY = {"retries": 5, "interval": 0.05, "backoff": 2.0, "max_delay": 1.0}


@app.step(**RETRY, retry_on=retryable)
def ask_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    answer = paid_call("/v1/model", {"messages": messages})
    print(f"  paid {answer['cost_cents']}c: model -> {answer['reply']['tool'] or 'answer'}")
    return answer


@app.step(**RETRY, retry_on=retryable)
def run_tool(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    answer = paid_call(f"/v1/tools/{tool}", args)
    print(f"  paid {answer['cost_cents']}c: {tool} -> {answer['result']}")
    return answer


@app.step()
def ask_human(tool: str) -> None:
    # A step, not a print in the workflow: the body replays (after a crash, and when the
    # parked wait below wakes up), and the human should be asked once.
    print(f"waiting for approval of {tool}: run `python main.py approve` (or --deny)")


@app.workflow()
def agent(task: str) -> dict[str, Any]:
    # The budget is workflow state: rebuilt on replay from the recorded calls' costs.
    calls = cents = 0
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]

    def progress(text: str) -> None:
        durably.write_stream("progress", f"[{calls} calls, {cents}c] {text}")

    answer = "stopped: the budget ran out"
    while calls < MAX_CALLS and cents < MAX_CENTS:
        out = ask_model(messages)
        calls, cents = calls + 1, cents + out["cost_cents"]
        reply = out["reply"]
        messages.append({"role": "assistant", "content": reply["text"]})
        if reply["tool"] is None:
            answer = reply["text"]
            break
        tool = reply["tool"]
        progress(f"model wants {tool}({json.dumps(reply['args'])})")
        if tool in NEEDS_APPROVAL:
            progress(f"waiting for a human to approve {tool}")
            ask_human(tool)
            # A wait this long parks: no thread is held while the human takes their time.
            decision = durably.recv("approval", timeout=24 * 3600)  # None if nobody answers
            if not (decision and decision.get("approved")):
                progress(f"{tool} denied")
                messages.append({"role": "tool", "name": tool, "content": "denied by a human"})
                continue
            progress(f"{tool} approved")
        out = run_tool(tool, reply["args"])
        calls, cents = calls + 1, cents + out["cost_cents"]
        messages.append({"role": "tool", "name": tool, "content": json.dumps(out["result"])})
        progress(f"{tool} -> {json.dumps(out['result'])}")
    progress(f"done: {answer}")
    durably.close_stream("progress")
    return {"answer": answer, "calls": calls, "cents": cents}


def run() -> None:
    service["url"] = fake_service.serve()
    # Failed attempts are logged by durably as WARNINGs: show them, one line each.
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    with app:
        resumed = bool(app.list_workflows(ids=[AGENT_ID]))
        handle = agent.options(id=AGENT_ID).start(TASK)
        print(f"{'resumed' if resumed else 'started'} agent {handle.id}")
        result = handle.result()
    print(f"result: {json.dumps(result)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "tail", "approve"])
    parser.add_argument("--deny", action="store_true", help="refuse instead of approving")
    args = parser.parse_args()
    if args.command == "run":
        run()
    elif args.command == "tail":
        with durably.Client() as client:
            while not client.list_workflows(ids=[AGENT_ID]):  # like tail -F: wait for it
                time.sleep(0.5)
            for line in client.read_stream(AGENT_ID, "progress"):
                print(line, flush=True)
    else:
        # The key makes a repeated command deliver one answer.
        answer = {"approved": not args.deny}
        key = f"{AGENT_ID}:approval"
        with durably.Client() as client:
            client.send(AGENT_ID, answer, topic="approval", idempotency_key=key)
        print("denied" if args.deny else "approved")


if __name__ == "__main__":
    main()
