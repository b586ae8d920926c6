"""The reference guide's worker (guide_worker.py, unchanged) for first runs
only: it runs an account's first run as the guide's code does, until that
run continues-as-new, and refuses the workflow task of any continued run,
so that another worker on the task queue (ours) takes the next run with the
state the guide's code carried. Usage: guide_handover.py ADDRESS TASK_QUEUE
"""
# ruff: noqa
import asyncio
import importlib.util
import os
import sys

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import (
    Interceptor,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

_spec = importlib.util.spec_from_file_location(
    "guide_worker", os.path.join(os.path.dirname(os.path.abspath(__file__)), "guide_worker.py")
)
guide = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guide)


class FirstRunsOnly(WorkflowInboundInterceptor):
    async def execute_workflow(self, input):
        if workflow.info().continued_run_id:
            # Not a failure of the workflow: its task goes back to the queue.
            raise RuntimeError("a continued run is for the other worker")
        return await super().execute_workflow(input)


class Handover(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput):
        return FirstRunsOnly


async def main() -> None:
    client = await Client.connect(sys.argv[1], namespace="default")
    worker = Worker(
        client,
        task_queue=sys.argv[2],
        workflows=[guide.LoyaltyEntityWorkflow],
        activities=[guide.record_points_transaction, guide.record_redemption, guide.send_tier_change_notification],
        workflow_runner=UnsandboxedWorkflowRunner(),
        interceptors=[Handover()],
    )
    print("guide worker (first runs only) polling", sys.argv[2], flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
