"""A worker written from the reference guide (models.py, activities.py and
workflows.py copied verbatim from the guide's phases 1-3), run by the tests
to show that our API role works against any worker implementing the wire
contract. Usage: guide_worker.py ADDRESS TASK_QUEUE
"""
# ruff: noqa
import sys

# models.py
from dataclasses import dataclass, field
from enum import Enum

class LoyaltyTier(str, Enum):
    """Loyalty tiers based on lifetime points earned."""
    BRONZE = "Bronze"
    SILVER = "Silver"
    GOLD = "Gold"
    PLATINUM = "Platinum"

@dataclass
class PointsEvent:
    """A single points transaction to be processed by the entity."""
    event_id: str          # Unique identifier for idempotent processing
    points: int            # Positive for accrual, negative for redemption
    reason: str            # Human-readable description (e.g., "purchase", "signup_bonus")
    source: str = ""       # Originating service or channel

@dataclass
class LoyaltyState:
    """The complete state of a customer's loyalty account.

    This is the data that survives Continue-As-New transitions.
    Keep it small and serializable — well under the 2 MB payload limit.
    """
    customer_id: str
    points_balance: int = 0
    lifetime_points: int = 0
    tier: str = LoyaltyTier.BRONZE.value
    is_active: bool = True
    processed_event_ids: list[str] = field(default_factory=list)

    # Unprocessed events carried across Continue-As-New transitions
    pending_events: list[dict] = field(default_factory=list)

@dataclass
class LoyaltySummary:
    """Read-only view of the loyalty account returned by Queries."""
    customer_id: str
    points_balance: int
    lifetime_points: int
    tier: str
    is_active: bool

@dataclass
class RedemptionRequest:
    """Input for the redeem_points Update."""
    event_id: str       # Idempotency key for the redemption
    points: int         # Number of points to redeem (must be positive)
    reward: str         # What the points are being redeemed for

@dataclass
class RedemptionResult:
    """Output from the redeem_points Update."""
    redeemed: int
    remaining_balance: int
    reward: str


# activities.py
import logging

from temporalio import activity

logger = logging.getLogger(__name__)

@activity.defn
async def record_points_transaction(transaction: dict) -> bool:
    """Record a points transaction in the loyalty database.

    Must be idempotent: use event_id as the key to prevent duplicate records
    on retry. Example: INSERT ... ON CONFLICT (event_id) DO NOTHING.
    """
    activity.logger.info(
        "Recording points transaction for customer %s: %s points (%s)",
        transaction["customer_id"],
        transaction["points"],
        transaction["reason"],
    )
    # await db.execute("INSERT INTO points_transactions ... ON CONFLICT (event_id) DO NOTHING", ...)
    return True

@activity.defn
async def send_tier_change_notification(notification: dict) -> bool:
    """Send a notification when a customer's loyalty tier changes.

    Non-critical: if this Activity fails after all retries, the Workflow
    logs the failure and continues rather than terminating the account.
    """
    activity.logger.info(
        "Sending tier change notification to customer %s: %s -> %s",
        notification["customer_id"],
        notification["old_tier"],
        notification["new_tier"],
    )
    # await email_service.send(template="tier_change", to=..., context={...})
    return True

@activity.defn
async def record_redemption(redemption: dict) -> bool:
    """Record a points redemption in the loyalty database.

    Must be idempotent: use event_id as the key to prevent duplicate records
    on retry. Example: INSERT ... ON CONFLICT (event_id) DO NOTHING.
    """
    activity.logger.info(
        "Recording redemption for customer %s: %s points for %s",
        redemption["customer_id"],
        redemption["points"],
        redemption["reward"],
    )
    # await db.execute("INSERT INTO redemptions ... ON CONFLICT (event_id) DO NOTHING", ...)
    return True


# workflows.py
import asyncio
from collections import deque
from dataclasses import asdict
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError


# Retry policy for database writes: retry transient failures with backoff
DB_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)

# Retry policy for notifications: more aggressive retry since these are non-critical
NOTIFICATION_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
)

@workflow.defn
class LoyaltyEntityWorkflow:
    """Manages a single customer's loyalty account as a long-lived Entity Workflow.

    Each customer has their own instance identified by a stable Workflow Id
    (e.g. "loyalty-cust-123"). All side effects are delegated to Activities.
    """

    @workflow.init
    def __init__(self, state: LoyaltyState | None = None) -> None:
        """Initialize Workflow state.

        The @workflow.init decorator ensures this runs before any Signal
        or Update handler, preventing race conditions with Signal-with-Start.

        Args:
            state: Existing state from Continue-As-New, or None for a new account.
        """
        if state is not None:
            self._state = state
        else:
            # First start only (not Continue-As-New); customer_id set in run().
            self._state = LoyaltyState(customer_id="")

        # Signal queue: handlers append, main loop pops one at a time.
        self._pending_signals: deque[dict] = deque(self._state.pending_events)
        self._state.pending_events = []  # Clear after restoring

        self._shutdown_requested: bool = False

    @workflow.run
    async def run(self, state: LoyaltyState | None = None) -> LoyaltyState:
        """Main entity loop: wait for messages, process them, and Continue-As-New when needed."""
        if state is None:
            # First start: derive customer_id from the Workflow Id convention.
            self._state.customer_id = workflow.info().workflow_id.replace("loyalty-", "", 1)

        workflow.logger.info(
            "Loyalty entity started for customer %s (tier: %s, balance: %d)",
            self._state.customer_id,
            self._state.tier,
            self._state.points_balance,
        )

        while not self._shutdown_requested:
            # Block until a Signal arrives, shutdown is requested,
            # CAN is suggested, or 24 hours pass.
            await workflow.wait_condition(
                lambda: (
                    bool(self._pending_signals)
                    or self._shutdown_requested
                    or workflow.info().is_continue_as_new_suggested()
                ),
                timeout=timedelta(hours=24),
            )

            # Process all queued Signals sequentially
            while self._pending_signals:
                event_data = self._pending_signals.popleft()
                await self._process_points_event(event_data)

                # Check if we should Continue-As-New after each event
                if workflow.info().is_continue_as_new_suggested():
                    break

            # Exit if shutdown was requested
            if self._shutdown_requested:
                break

            # Trigger Continue-As-New when Temporal suggests it
            if workflow.info().is_continue_as_new_suggested():
                await self._do_continue_as_new()

        # Wait for all in-flight handlers before completing.
        await workflow.wait_condition(workflow.all_handlers_finished)

        workflow.logger.info(
            "Loyalty entity shutting down for customer %s (final balance: %d)",
            self._state.customer_id,
            self._state.points_balance,
        )
        return self._state

    @workflow.signal
    def add_points(self, event: dict) -> None:
        """Enqueue a points accrual event for processing in the main loop.

        Signal handlers must be synchronous — they only append to the queue.
        All processing happens in the main loop to ensure sequential execution.

        Args:
            event: dict with keys event_id, points, reason, and optionally source.
        """
        self._pending_signals.append(event)

    @workflow.signal
    def shutdown(self) -> None:
        """Signal the entity to drain pending events and terminate gracefully."""
        self._shutdown_requested = True

    # ------------------------------------------------------------------
    # Query handlers
    # ------------------------------------------------------------------

    @workflow.query
    def get_loyalty_summary(self) -> LoyaltySummary:
        """Return a read-only summary (no Events generated, safe at high frequency)."""
        return LoyaltySummary(
            customer_id=self._state.customer_id,
            points_balance=self._state.points_balance,
            lifetime_points=self._state.lifetime_points,
            tier=self._state.tier,
            is_active=self._state.is_active,
        )

    @workflow.query
    def get_points_balance(self) -> int:
        """Return the current points balance."""
        return self._state.points_balance

    @workflow.query
    def get_tier(self) -> str:
        """Return the current loyalty tier."""
        return self._state.tier

    @workflow.update
    async def redeem_points(self, request: RedemptionRequest) -> RedemptionResult:
        """Redeem loyalty points for a reward.

        Blocks until the Update completes and the caller receives the result,
        making it ideal for checkout flows that need confirmed point deduction.

        Raises:
            ApplicationError: If the account is inactive or has insufficient points.
        """
        if not self._state.is_active:
            raise ApplicationError(
                "Cannot redeem points: account is inactive",
                type="InactiveAccount",
                non_retryable=True,
            )

        if request.points > self._state.points_balance:
            raise ApplicationError(
                f"Insufficient points: requested {request.points}, "
                f"available {self._state.points_balance}",
                type="InsufficientPoints",
                non_retryable=True,
            )

        # Idempotency: return without re-processing if already applied.
        if request.event_id in self._state.processed_event_ids:
            return RedemptionResult(
                redeemed=request.points,
                remaining_balance=self._state.points_balance,
                reward=request.reward,
            )

        self._state.points_balance -= request.points

        # Record the redemption via an Activity (idempotent on event_id).
        await workflow.execute_activity(
            record_redemption,
            {
                "customer_id": self._state.customer_id,
                "event_id": request.event_id,
                "points": request.points,
                "reward": request.reward,
            },
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY_POLICY,
        )

        # Track this event as processed.
        self._state.processed_event_ids.append(request.event_id)
        self._trim_processed_ids()

        workflow.logger.info(
            "Customer %s redeemed %d points for %s (remaining: %d)",
            self._state.customer_id,
            request.points,
            request.reward,
            self._state.points_balance,
        )

        return RedemptionResult(
            redeemed=request.points,
            remaining_balance=self._state.points_balance,
            reward=request.reward,
        )

    @redeem_points.validator
    def validate_redemption(self, request: RedemptionRequest) -> None:
        """Run before the Update is accepted into Event History. Rejection here writes no Event."""
        if request.points <= 0:
            raise ApplicationError(
                "Redemption amount must be a positive number",
                type="ValidationError",
            )

    async def _process_points_event(self, event_data: dict) -> None:
        """Process a single points event: check for duplicates, record the
        transaction via an Activity, update in-memory state, and evaluate tier.
        """
        event_id = event_data.get("event_id", "")
        points = event_data.get("points", 0)
        reason = event_data.get("reason", "unknown")

        if event_id and event_id in self._state.processed_event_ids:
            workflow.logger.info(
                "Skipping duplicate event %s for customer %s",
                event_id,
                self._state.customer_id,
            )
            return

        # Record the transaction BEFORE updating in-memory state to avoid
        # double-counting if the Activity retries.
        await workflow.execute_activity(
            record_points_transaction,
            {
                "customer_id": self._state.customer_id,
                "event_id": event_id,
                "points": points,
                "reason": reason,
            },
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY_POLICY,
        )

        # Update state after Activity confirms success.
        self._state.points_balance += points
        if points > 0:
            self._state.lifetime_points += points

        if event_id:
            self._state.processed_event_ids.append(event_id)
            self._trim_processed_ids()

        workflow.logger.info(
            "Processed event %s for customer %s: %+d points (balance: %d)",
            event_id,
            self._state.customer_id,
            points,
            self._state.points_balance,
        )

        await self._evaluate_tier()

    async def _evaluate_tier(self) -> None:
        """Recalculate tier; send notification if it changed (non-critical)."""
        new_tier = self._calculate_tier(self._state.lifetime_points)

        if new_tier != self._state.tier:
            old_tier = self._state.tier
            self._state.tier = new_tier

            workflow.logger.info(
                "Customer %s tier changed: %s -> %s",
                self._state.customer_id,
                old_tier,
                new_tier,
            )

            # Notification is non-critical — log and continue on failure.
            try:
                await workflow.execute_activity(
                    send_tier_change_notification,
                    {
                        "customer_id": self._state.customer_id,
                        "old_tier": old_tier,
                        "new_tier": new_tier,
                    },
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=NOTIFICATION_RETRY_POLICY,
                )
            except Exception:
                workflow.logger.warning(
                    "Failed to send tier change notification for customer %s; "
                    "continuing entity lifecycle",
                    self._state.customer_id,
                )

    def _calculate_tier(self, lifetime_points: int) -> str:
        """Determine tier from lifetime points — pure logic, no side effects."""
        if lifetime_points >= 10_000:
            return LoyaltyTier.PLATINUM.value
        if lifetime_points >= 5_000:
            return LoyaltyTier.GOLD.value
        if lifetime_points >= 1_000:
            return LoyaltyTier.SILVER.value
        return LoyaltyTier.BRONZE.value

    def _trim_processed_ids(self) -> None:
        """Keep only the most recent 1,000 processed event IDs to prevent unbounded growth."""
        max_ids = 1_000
        if len(self._state.processed_event_ids) > max_ids:
            self._state.processed_event_ids = self._state.processed_event_ids[
                -max_ids:
            ]

    async def _do_continue_as_new(self) -> None:
        """Perform Continue-As-New: drain excess pending signals, serialize
        remaining unprocessed signals into state, wait for all handlers to
        finish, then call continue_as_new with the current state.
        """
        # Drain excess pending signals before serializing into the CAN input.
        # Keeps the LoyaltyState payload well under the 2 MB limit.
        MAX_PENDING_CARRY = 500
        while len(self._pending_signals) > MAX_PENDING_CARRY:
            event_data = self._pending_signals.popleft()
            await self._process_points_event(event_data)

        # Carry remaining unprocessed Signals to the next Execution.
        self._state.pending_events = list(self._pending_signals)

        # Wait for async handlers to finish before transitioning.
        await workflow.wait_condition(workflow.all_handlers_finished)

        workflow.logger.info(
            "Continuing as new for customer %s (balance: %d, pending: %d)",
            self._state.customer_id,
            self._state.points_balance,
            len(self._state.pending_events),
        )

        workflow.continue_as_new(self._state)



# worker.py, with the address and task queue from the command line. The
# sandbox is off because the guide's three modules are one file here.
async def main() -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker, UnsandboxedWorkflowRunner

    client = await Client.connect(sys.argv[1], namespace="default")
    worker = Worker(
        client,
        task_queue=sys.argv[2],
        workflows=[LoyaltyEntityWorkflow],
        activities=[record_points_transaction, record_redemption, send_tier_change_notification],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    print("guide worker polling", sys.argv[2], flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
