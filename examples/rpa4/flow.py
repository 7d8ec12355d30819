"""rpa4 (Arrow): a data pipeline through dbflow alone. Extract from SurveyHub
(SQL Server in production, PostgreSQL in the demo: portable SQL), transform
in Polars, load into rpa_db:

1. copy SurveyHub's ``survey_responses`` as is into rpa_db's
   ``survey_responses_copy``, streamed: ``iter_arrow`` hands ``bulk_insert``
   one Arrow batch at a time, so memory stays bounded by ``batch_rows``
   however large the table, and no Python object is made per value;
2. read the unprocessed responses into a Polars DataFrame, score them with
   Polars expressions (as ``common.calculate_satisfaction_score`` does),
   aggregate per customer and load the frame into ``rpa4_customer_scores``.
"""

from __future__ import annotations

from typing import Any, cast

import polars as pl
from common import SURVEY_RESPONSES
from prefect import flow, get_run_logger

from dbflow import DatabaseManager

# Every column, in the table's order (portable SQL: SQL Server and PostgreSQL).
COPY_SOURCE = (
    "SELECT survey_id, customer_id, response_data, submitted_at, processed "
    "FROM survey_responses ORDER BY survey_id"
)

QUESTIONS = [f"question_{q}" for q in range(1, 6)]
#: What common.calculate_satisfaction_score counts for a question not answered.
UNANSWERED = 3


def score_responses(responses: pl.DataFrame) -> pl.DataFrame:
    """Each response with its ``satisfaction_score``: the mean of the five
    answers (a missing one counts 3), rounded to 2 places, as
    ``common.calculate_satisfaction_score`` computes it; null when
    ``response_data`` is not a JSON object or an answer is not a number
    (``common.score`` marks those responses failed). Answers are the numbers
    SurveyHub stores; JSON null and true/false, which ``int()`` takes its own
    way, are not followed.

    ``str.json_path_match`` rather than ``str.json_decode``: it answers null
    for text that is not JSON, where ``json_decode`` fails the whole frame
    on the first malformed row (and on an answer of an unexpected type)."""
    text = pl.col("response_data")
    is_json = text.str.json_path_match("$").is_not_null()
    is_object = is_json & text.str.strip_chars_start().str.starts_with("{")
    answers = [text.str.json_path_match(f"$.{q}") for q in QUESTIONS]
    # int() of the answer, as calculate_satisfaction_score takes it (4, 4.0, "4").
    ratings = [a.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False) for a in answers]
    all_numbers = pl.all_horizontal(
        [a.is_null() | r.is_not_null() for a, r in zip(answers, ratings, strict=True)]
    )
    total = pl.sum_horizontal([r.fill_null(UNANSWERED) for r in ratings])
    score = (total / len(QUESTIONS)).round(2)
    return responses.with_columns(
        satisfaction_score=pl.when(is_object & all_numbers).then(score).otherwise(None)
    )


def customer_scores(scored: pl.DataFrame) -> pl.DataFrame:
    """One row per customer, named as ``rpa4_customer_scores``'s columns
    (``scored_at`` is left to its default): how many unprocessed responses,
    how many of them scored, their average score, the latest submission."""
    return (
        scored.group_by("customer_id")
        .agg(
            responses=pl.len().cast(pl.Int32),
            scored=pl.col("satisfaction_score").count().cast(pl.Int32),
            average_score=pl.col("satisfaction_score").mean().round(2),
            last_submitted_at=pl.col("submitted_at").max(),
        )
        .sort("customer_id")
    )


@flow(name="rpa4 (Arrow)")
def rpa4_workflow(batch_rows: int = 50_000) -> dict[str, Any]:
    logger = get_run_logger()
    with DatabaseManager("rpa_db") as rpa_db, DatabaseManager("SurveyHub") as survey_hub:
        migrations = rpa_db.run_migrations()

        # 1. Extract and load, streamed. Rerunnable: the copy is emptied
        # first, so a rerun replaces it rather than meeting its own primary
        # keys. bulk_insert is all-or-nothing (one unit: a failure anywhere in
        # the stream writes nothing), so a failed run leaves the copy empty,
        # never half-filled, and the next run fills it again. (Its emptying
        # and loading are two steps, not one transaction: a reader in between
        # sees an empty copy. Readers that must never see that would load a
        # staging table and swap it in with one transaction.)
        rpa_db.execute_query("DELETE FROM survey_responses_copy")
        copied = rpa_db.bulk_insert(
            "survey_responses_copy", survey_hub.iter_arrow(COPY_SOURCE, batch_rows=batch_rows)
        )
        logger.info(
            "Copied %d survey responses from SurveyHub in Arrow batches of at most %d rows",
            copied,
            batch_rows,
        )

        # 2. Extract the unprocessed responses, transform in Polars, load the
        # frame. The scores describe the latest run, so they are replaced too.
        responses = survey_hub.fetch_polars(SURVEY_RESPONSES, {"processed": 0})
        rpa_db.execute_query("DELETE FROM rpa4_customer_scores")
        scores = score_responses(responses)["satisfaction_score"] if responses.height else None
        written = 0
        if scores is not None:
            customers = customer_scores(responses.with_columns(scores))
            written = rpa_db.bulk_insert("rpa4_customer_scores", customers)
    found = responses.height
    failed = 0 if scores is None else scores.null_count()
    logger.info(
        "Scored %d of %d responses in Polars (%d not readable); %d customers' scores loaded",
        found - failed,
        found,
        failed,
        written,
    )
    average = None if scores is None or failed == found else cast("float", scores.mean())
    return {
        "rows_copied": copied,
        "batch_rows": batch_rows,
        "responses_found": found,
        "responses_scored": found - failed,
        "failed": failed,
        "customers_scored": written,
        "average_score": None if average is None else round(average, 2),
        "schema_version": migrations["current_version"],
    }
