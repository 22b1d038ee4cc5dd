"""SQLModel tables. Secrets never go here; prompts live only in `item.body`.

Item state machine: queued → running (leased) → succeeded | failed | cancelled | expired, with
running → queued when a lease expires or an item is re-routed or deferred.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

TERMINAL_ITEM_STATES = ("succeeded", "failed", "cancelled", "expired")
# `vendor`: offered to a vendor's own batch API (the vendor batch lane); no worker holds it.
PENDING_ITEM_STATES = ("queued", "running", "vendor")

BATCH_ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
BATCH_TERMINAL = ("completed", "failed", "expired", "cancelled")


class File(SQLModel, table=True):
    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    purpose: str
    filename: str
    # An assembled upload can pass 2 GiB, past a 32-bit INTEGER on PostgreSQL.
    bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    line_count: int = 0
    sha256: str = ""
    created_at: int
    # The retention sweep deletes the file then (None: kept until deleted).
    expires_at: int | None = Field(default=None, index=True)
    # Relative to the files directory; built from the id only, never from the client filename.
    path: str
    status: str = "processed"


class Batch(SQLModel, table=True):
    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    status: str = Field(index=True)
    created_at: int
    expires_at: int
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata_json: str | None = Field(default=None, sa_column=Column(Text))
    errors_json: str | None = Field(default=None, sa_column=Column(Text))
    model_override: str | None = None
    fallbacks_json: str = "[]"
    max_cost_usd: str | None = None
    # OpenAI's `output_expires_after.seconds`: the output and error files expire this long
    # after they are written (None: they are kept until deleted).
    output_expires_seconds: int | None = None
    # Structured outputs: answers to JSON lines are checked (and re-asked) unless switched off.
    validate_output: bool = True
    # Within its tenant's fair share of a vendor, a higher priority batch goes first.
    priority: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # Response cache (opt-in): lines answered before for this tenant are served from it.
    cache: bool = False
    price_table_json: str = Field(default="{}", sa_column=Column(Text))
    # Filled at finalize; while running they are computed from items and attempts.
    total: int = 0
    completed_count: int = 0
    failed_count: int = 0
    summary_json: str | None = Field(default=None, sa_column=Column(Text))
    # The last finish sequence handed to this batch's items (see `store/finished.py`).
    finished_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # Ingest ownership: an ingest holds the batch until `ingest_lease_until`; past it the
    # reconciler takes the ingest over, at most MAX_INGEST_ATTEMPTS times.
    ingest_attempts: int = 0
    ingest_lease_until: float | None = None
    # The vendor batch lane: lines whose vendor has a batch API go there first (half price).
    vendor_batch: bool = False


class Item(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("batch_id", "idx", name="uq_item_batch_idx"),
        UniqueConstraint("batch_id", "custom_id", name="uq_item_batch_custom_id"),
        # The reconciler looks for queued items by when (or whether) they were enqueued.
        Index("ix_item_state_enqueued", "state", "enqueued_at"),
        Index("ix_item_batch_state", "batch_id", "state"),
        # A running task refills from its batch's queued items of its vendor, in input order.
        Index("ix_item_refill", "batch_id", "vendor", "state", "idx"),
        # Live results tail a batch by the order its lines finished in.
        Index("ix_item_batch_finish_seq", "batch_id", "finish_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    batch_id: str
    idx: int
    custom_id: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    alias: str
    vendor: str
    chain_json: str = "[]"
    chain_pos: int = 0
    state: str = "queued"
    lease_owner: str | None = None
    lease_until: float | None = None
    enqueued_at: float | None = None
    not_before: float | None = None
    claims: int = 0
    attempts: int = 0
    model_attempts: int = 0
    tried_json: str = "[]"
    # The answer without its body; the body is `response_body` (see `store/answers.py`).
    result_json: str | None = Field(default=None, sa_column=Column(Text))
    # The vendor's response body as JSON text, written once with the outcome and spliced into
    # output lines as stored. NULL on rows written before it: their body is in `result_json`.
    response_body: str | None = Field(default=None, sa_column=Column(Text))
    error_json: str | None = Field(default=None, sa_column=Column(Text))
    served_deployment: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # Money is integer picodollars (1e-12 USD): exact, and SQL can SUM it on any database.
    cost_pusd: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    unpriced: bool = False
    finished_at: float | None = None
    # Set once, when the item turns terminal: the batch's finish sequence at that commit.
    finish_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Served from the response cache: no call, cost 0; what the call would have cost instead.
    cached: bool = False
    cache_saved_pusd: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0)
    )
    # The vendor job (vendor_job.id) the item was offered to, while and after it is there.
    vendor_job_id: str | None = Field(default=None, index=True)


class Attempt(SQLModel, table=True):
    """One vendor call (or one call that may have happened: status `lost`)."""

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(index=True)
    batch_id: str = Field(index=True)
    alias: str
    deployment_id: str
    vendor: str
    provider_model: str | None = None
    started_at: float
    finished_at: float | None = None
    status: str  # ok | error | lost
    error_kind: str | None = None
    status_code: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_pusd: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    unpriced: bool = False
    # A paid call whose result was not used because the item was finished or re-leased meanwhile.
    duplicate: bool = False
    # `online` (a call of ours) or `vendor_batch` (a line of a vendor's batch job).
    lane: str = "online"


class VendorJob(SQLModel, table=True):
    """One job on a vendor's batch API. The row (an intent) is written, with its items assigned,
    before the job is submitted; the submission carries the row id in the job's metadata, so a
    job whose creation outcome was lost is found again, never submitted twice."""

    __table_args__ = (Index("ix_vendor_job_status", "status"),)

    id: str = Field(primary_key=True)  # vj_<hex>: ours, sent as metadata
    batch_id: str = Field(index=True)
    vendor: str  # the adapter: openai | anthropic
    deployment_id: str
    endpoint: str
    lines: int = 0
    # intent → submitted → ended → ingested; or cancelling → ended; or failed (never submitted)
    status: str = "intent"
    vendor_id: str | None = None  # the vendor's job id once known
    vendor_status: str | None = None  # as the vendor last said
    created_at: float
    submitted_at: float | None = None
    ended_at: float | None = None
    next_poll_at: float = 0.0
    polls: int = 0
    ingested: int = 0  # result lines written to items so far
    error: str | None = Field(default=None, sa_column=Column(Text))


class Upload(SQLModel, table=True):
    """OpenAI's Uploads API: a file sent in parts, assembled into a File on `complete`."""

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    filename: str
    purpose: str
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))  # up to 8 GB
    mime_type: str
    created_at: int
    expires_at: int  # an upload not completed by then can no longer be (OpenAI: one hour)
    status: str = "pending"  # pending | completed | cancelled
    # The file's own expiry once completed (the create call's `expires_after`), in seconds.
    file_expires_seconds: int | None = None
    file_id: str | None = None


class UploadPart(SQLModel, table=True):
    id: str = Field(primary_key=True)
    upload_id: str = Field(index=True)
    bytes: int
    created_at: int
    path: str  # relative to the files directory, built from the part id


class CachedResponse(SQLModel, table=True):
    """A successful answer kept for reuse by later caching batches of the same tenant."""

    __tablename__ = "response_cache"
    # sha256 of (tenant, endpoint, canonical body with the served model): see execution/cache.py.
    key: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    endpoint: str
    model: str  # the deployment model the request was sent with
    # The item's `result` (status_code, request_id, body, provider_model, usage) as JSON.
    result_json: str = Field(sa_column=Column(Text, nullable=False))
    bytes: int = 0
    # TTL and the size bound's eviction order (oldest first).
    created_at: float = Field(index=True)
