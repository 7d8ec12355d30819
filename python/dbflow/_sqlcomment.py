"""The comment `<DB>_QUERY_COMMENTS` appends to each statement, in
sqlcommenter's format (https://google.github.io/sqlcommenter/spec/): keys
sorted, values percent-encoded and single-quoted, so a DBA sees in
`pg_stat_activity`, SQL Server's DMVs or the server log which application,
Prefect flow and task run, and which trace sent a statement.

    /*application='rpa2',flow='nightly-scores',task='score_batch-3',traceparent='00-...-01'*/

Read from the calling thread's context when the statement is made: the
current OpenTelemetry span (if the API is in use) and Prefect's run
contexts (if Prefect is imported). Never a parameter value.
"""

from __future__ import annotations

import sys
from urllib.parse import quote


def _traceparent() -> str | None:
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _prefect_runs() -> tuple[str | None, str | None]:
    if "prefect" not in sys.modules:
        return None, None
    from prefect.context import FlowRunContext, TaskRunContext

    flow = FlowRunContext.get()
    task = TaskRunContext.get()
    flow_name = flow.flow_run.name if flow is not None and flow.flow_run is not None else None
    task_name = task.task_run.name if task is not None else None
    return flow_name, task_name


def _value(text: str) -> str:
    return "'" + quote(text, safe="").replace("'", "\\'") + "'"


def comment(application: str) -> str | None:
    """The comment for a statement sent now, or None with nothing to say."""
    flow, task = _prefect_runs()
    fields = {
        "application": application,
        "flow": flow,
        "task": task,
        "traceparent": _traceparent(),
    }
    pairs = [f"{quote(k, safe='')}={_value(v)}" for k, v in sorted(fields.items()) if v]
    if not pairs:
        return None
    # A value cannot close the comment: percent-encoding leaves no '*/'.
    return "/*" + ",".join(pairs) + "*/"
