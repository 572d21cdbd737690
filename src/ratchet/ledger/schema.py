"""The ledger's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

The ledger is the source of truth of every loop: what ran, what was proposed, what was decided and
why, and where every training example came from. Rows are only added or moved forward in status;
nothing is deleted, so an audit can replay a run.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 1

metadata = sa.MetaData()

meta = sa.Table(
    "ratchet_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # eval | evolve | flywheel | research
    sa.Column("project", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running | stopped | finished | failed
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

evals = sa.Table(
    "evals", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # a hash of everything that fixes the outcome
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=True),
    sa.Column("candidate_id", sa.String(64), nullable=True),
    sa.Column("harness", sa.String(64), nullable=False),  # harness fingerprint or commit
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("suite", sa.Text, nullable=False),
    sa.Column("suite_fingerprint", sa.String(64), nullable=False),
    sa.Column("split", sa.String(16), nullable=False),
    sa.Column("epochs", sa.Integer, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("n_tasks", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running | done
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

rollouts = sa.Table(
    "rollouts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("eval_id", sa.String(64), sa.ForeignKey("evals.id"), nullable=False),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("signal", sa.String(16), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("eval_id", "task_id", "epoch", name="uq_rollout"),
)

candidates = sa.Table(
    "candidates", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("parent_id", sa.String(64), nullable=True),
    sa.Column("commit", sa.String(64), nullable=True),
    sa.Column("proposer", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("rationale", sa.Text, nullable=False, default=""),
    sa.Column("hypothesis", sa.Text, nullable=False, default=""),
    sa.Column("diff", sa.Text, nullable=False, default=""),
    sa.Column("fingerprint", sa.String(64), nullable=True),
    # proposed | guard_rejected | awaiting_approval | approved | evaluating | accepted | rejected | failed | duplicate
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("decision", sa.JSON, nullable=False, default=dict),
    sa.Column("cost", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # no unique (run_id, round): a population round has several candidates (ledger/migrate.py drops the old one)
)

lessons = sa.Table(
    "lessons", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("candidate_id", sa.String(64), nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("run_id", "round", name="uq_lesson_round"),
)

events = sa.Table(  # unseals, approvals, budget stops, strategy switches: the audit trail
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

state = sa.Table(  # small per-run state that resume needs exactly (proposer, holdout mechanism)
    "run_state", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# -- data flywheel ---------------------------------------------------------------------------------
fw_generations = sa.Table(  # one row per flywheel generation: what was generated, kept, trained, decided
    "fw_generations", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),  # the model that generated the data
    # generating | filtered | trained | evaluated | promoted | rejected | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("eval_id", sa.String(64), nullable=True),  # the generation's sampling evaluation
    sa.Column("counts", sa.JSON, nullable=False),  # rollouts, verified, filtered by reason, contamination hits
    sa.Column("dataset_hash", sa.String(32), nullable=True),
    sa.Column("candidate_model", sa.Text, nullable=True),
    sa.Column("decision", sa.JSON, nullable=False),
    sa.Column("seconds", sa.JSON, nullable=False),  # wall time per stage
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

fw_examples = sa.Table(  # every candidate training example, kept or dropped (with why), with provenance
    "fw_examples", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # sft | pair
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("split", sa.String(16), nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # kept | dropped
    sa.Column("reason", sa.String(32), nullable=True),  # why it was dropped
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),  # Example.to_json() plus the drop detail
    sa.Column("created_at", sa.Float, nullable=False),
)
sa.Index("ix_fw_examples_run_gen", fw_examples.c.run_id, fw_examples.c.generation)

models = sa.Table(  # the model registry: every trained model, promoted or not, with its lineage
    "models", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("project", sa.Text, nullable=False),
    sa.Column("parent", sa.Text, nullable=True),  # the model it was trained from
    sa.Column("path", sa.Text, nullable=False),  # the weights dir (.ratchet/models/<name>)
    sa.Column("status", sa.String(16), nullable=False),  # candidate | promoted | rejected
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("generation", sa.Integer, nullable=True),
    sa.Column("dataset_hash", sa.String(32), nullable=True),
    sa.Column("train_config", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
